"""The project admin's pages: create and edit projects, upload prompts, manage members and their tokens.

Each page is permission-checked through core.permissions: non-members get 404 (as for a missing
project), members without the admin role 403. Writes go through feedback.services.
"""
