"""The study web app (Flask). Never imports torch. Built in issue 4."""
