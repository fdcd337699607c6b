"""Which probe approach the planner keeps: about the best coverage, then the shorter track."""

from brachycryo.planning.cryo_layout import APPROACH_COVERAGE_TOLERANCE, _preferred


def test_shorter_track_wins_when_coverage_is_about_equal():
    far, near = object(), object()
    # the demo's bulky mass: 61 % of the core from the far side (237 mm), 56 % from the near
    # side (130 mm); a 5-point gain is not worth 107 mm more of track
    assert _preferred([(0.61, 237.0, far), (0.56, 130.0, near)]) is near


def test_clearly_better_coverage_wins_over_a_shorter_track():
    far, near = object(), object()
    worse = 0.61 - APPROACH_COVERAGE_TOLERANCE - 0.01
    assert _preferred([(0.61, 237.0, far), (worse, 130.0, near)]) is far


def test_equal_tracks_keep_the_higher_coverage_then_the_first_tried():
    a, b, c = object(), object(), object()
    assert _preferred([(0.50, 100.0, a), (0.55, 100.0, b)]) is b
    assert _preferred([(0.55, 100.0, a), (0.55, 100.0, c)]) is a
