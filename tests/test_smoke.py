from tests.conftest import login


def test_demo_like_login_reaches_home(client, make):
    """A user with the right password lands on their home page."""
    user = make.user(make.org("hospital_program"))
    response = login(client, user.email)
    assert response.status_code == 302
    assert "Welcome" in client.get("/").get_data(as_text=True)
