"""Login, logout and server-side sessions."""
