"""Published aggregate releases: the only numbers a police partner ever sees."""
