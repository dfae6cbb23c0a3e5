"""Widget keys are safe by default."""

from __future__ import annotations

from widget.forms import WidgetKeyForm
from widget.models import WidgetKey


def test_a_new_key_requires_visitor_tokens_unless_the_admin_unticks_it() -> None:
    assert WidgetKey().requires_visitor_token is True
    assert WidgetKeyForm().fields["requires_visitor_token"].initial is True
