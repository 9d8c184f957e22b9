"""The summary's numbers are the progress lines' numbers."""

import pytest

from medmae.training.summary import report_windows


def test_windows_follow_the_progress_lines():
    losses = [float(i) for i in range(1, 8)]  # steps 4..10 of a resumed run
    mean_pred = [1.0] * 7
    w = report_windows(losses, mean_pred, start=3, log_every=4, total=10)
    # lines at steps 4 (window 4-4), 8 (5-8) and 10 (the last step: 9-10)
    assert [(x.first, x.last) for x in w] == [(4, 4), (5, 8), (9, 10)]
    assert [x.loss for x in w] == [1.0, pytest.approx((2 + 3 + 4 + 5) / 4), 6.5]
    # a run stopped early (SIGTERM) ends with the stop's own line
    stopped = report_windows(losses[:3], mean_pred[:3], start=3, log_every=4, total=10)
    assert [(x.first, x.last, x.loss) for x in stopped] == [(4, 4, 1.0), (5, 6, 2.5)]
    assert report_windows([], [], 0, 4, 10) == []
