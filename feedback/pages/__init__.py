"""The product's server-rendered pages, one module per page family:

- `annotate`: the annotator's pages (their projects, a project's home, annotate, submit, skip, lease renewal)
- `dashboard`: the project dashboard (reviewers)
- `review`: the reviewers' queue of disputed tasks and one task's adjudication
- `tasks`: the data browser (task list, one task, the annotator's history, revising a judgement)
- `exports`: preference snapshots and their files (admins)
- `projects`, `members`: the project admin's pages: create and edit projects, upload prompts, members and tokens
- `common`, `fields`: what the pages share (project lookups with their permission check, the header's links,
  ASCII-only form fields)

Each page is permission-checked through core.permissions: non-members get 404 (as for a missing
project), members without the role the page needs 403 (review pages: 404). Reads come from feedback.selectors,
writes go through feedback.services.
"""
