"""Scores and what is made of them: MAP@3 and friends (`metrics`, the one implementation),
balanced-prior correction (`prior`), the Kaggle submission format (`submission`) and the
evaluate stage's reports (`reports`)."""
