"""The schedule on the subscribe form: how often, and folded away the day and hour, with the visitor's time zone
guessed by the browser (a hidden field a few lines of script fill in; without script, the operator's). What they
chose is what the confirmation page, the welcome and the manage page say. A guess that is no zone to choose is
passed over, never an error; a day or hour out of range is a form error naming it."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.webapp import WATER, Web, csrf


def _subscribe(web: Web, client: FlaskClient, email: str, **fields: str) -> tuple[int, str]:
    form = {"csrf_token": csrf(client, "/"), "email": email, "theme": [WATER], **fields}
    answer = client.post("/subscribe", data=form)
    return answer.status_code, answer.text


def _confirm_page(web: Web, client: FlaskClient, email: str) -> str:
    confirm = web.link(email, "/confirm/")
    return client.post(confirm, data={"csrf_token": csrf(client, confirm)}).text


def test_the_form_offers_the_schedule_with_the_operators_defaults(web: Web) -> None:
    home = web.client().get("/").text
    assert '<select id="frequency" name="frequency">' in home and '<option value="weekly" selected>' in home
    assert "<details>" in home and 'name="hour"' in home and 'name="weekday"' in home
    assert '<input type="hidden" id="timezone" name="timezone" value="">' in home
    assert 'src="/static/timezone.js"' in home


def test_what_the_visitor_chose_is_what_the_pages_say(web: Web) -> None:
    client = web.client()
    fields = {"frequency": "monthly", "monthday": "15", "hour": "7", "timezone": "Asia/Calcutta"}
    assert _subscribe(web, client, "ada@example.org", **fields)[0] == 303
    page = _confirm_page(web, client, "ada@example.org")
    # The browser's old name of the zone is the zone it stands for.
    assert "monthly on day 15 at 07:00 Asia/Kolkata" in page, page


def test_a_guess_that_is_no_zone_is_passed_over_and_a_bad_hour_is_named(web: Web) -> None:
    client = web.client()
    assert _subscribe(web, client, "bo@example.org", frequency="daily", hour="9", timezone="Mars/Olympus")[0] == 303
    page = _confirm_page(web, client, "bo@example.org")
    assert f"daily at 09:00 {web.settings.timezone}" in page, page
    status, text = _subscribe(web, web.client(), "cy@example.org", frequency="weekly", hour="25")
    assert status == 400 and "hour &#39;25&#39; is not an hour from 0 to 23" in text
    assert web.status("cy@example.org") is None
    status, text = _subscribe(web, web.client(), "cy@example.org", frequency="hourly")
    assert status == 400 and "frequency" in text
