"""The analysis of study answers: exclusions, accuracy, trust, agreement, significance. Built in issue 5."""
