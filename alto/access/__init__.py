"""Who may do what in the dashboard when it is exposed: editor and viewer.

roles     the two roles and the refusal a viewer gets (AccessDenied, a PermissionError)
tokens    the editor and viewer tokens: read from the environment, compared in constant time, and
          the ones `alto app` starts with (a new editor token when bound beyond loopback)
throttle  wrong tokens slowed down, per session and for the whole server
actions   everything the dashboard changes (queue, cancel, delete, tags and notes), each refusing
          a viewer: the enforcement lives here, not in the buttons

Import from the module that defines a name (`from alto.access.roles import EDITOR`). This package
never imports Streamlit: the app passes each session's role to the actions explicitly.
"""
