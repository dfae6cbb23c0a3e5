from django import forms

from search.models import Feedback

QUESTION_MAX_CHARS = 2000


class AskForm(forms.Form):
    question = forms.CharField(
        max_length=QUESTION_MAX_CHARS,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Ask a question about your documents…"}),
    )
    # Absent for a new conversation; its owner is checked by the view's selector.
    conversation = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)


class FeedbackForm(forms.Form):
    rating = forms.ChoiceField(choices=Feedback.Rating.choices)
    comment = forms.CharField(
        required=False,
        max_length=2000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What was right or wrong? (optional)"}),
    )
