"""Counts read as people write them, in the window and on the command line."""
from app.services.wording import plural


def test_plural_takes_the_singular_for_one_and_an_irregular_plural_when_given() -> None:
    assert plural(1, "step") == "1 step"
    assert plural(0, "step") == "0 steps"
    assert plural(3, "category", "categories") == "3 categories"
    assert plural(1, "category", "categories") == "1 category"
    assert plural(2, "box", "boxes") == "2 boxes"
