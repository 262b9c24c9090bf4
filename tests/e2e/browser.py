"""Steps every browser test takes."""

import re


def log_in(page, base_url: str, username: str, password: str, start: str = "/") -> None:
    """Open `start` as an anonymous visitor, get sent to the login page, sign in and land back on `start`."""
    page.goto(f"{base_url}{start}")
    page.wait_for_url(re.compile(r"/accounts/login/"))
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    with page.expect_navigation():
        page.click("button[type=submit].primary")
