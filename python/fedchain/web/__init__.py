"""web: the live dashboard (`fedchain dashboard`, `fedchain demo --dashboard`): a Starlette app over the event index.

Needs the `dashboard` extra (starlette, uvicorn): `pip install 'fedchain[dashboard]'`.
"""
