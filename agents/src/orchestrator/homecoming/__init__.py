"""Bringing a session's work home: collect, diff, conflicts and accept, without the host ever
running git in a workspace.

The session's own git (in its container, as its user) writes a `git bundle`; the host keeps that
file in the session's record, checks every object in it, and fetches it into
`refs/agents/<id>/…` of the repository the session was seeded from. Diffs, merges and accepts
then run on those refs only, with no filter, driver, hook or pager an agent could have named.

- `refs`: ref names, the seed record, the collect script's status line and the bundle header
  (pure, parsed as hostile input);
- `hostgit`: the one way the host runs git on the seed repository;
- `inside`: the script the session's git runs, and the container it runs in;
- `collect`: `session.collect`;
- `flags`: paths an operator should look at twice (pure);
- `review`: `session.diff`, `session.conflicts`, `session.accept`;
- `record`: where a collect is kept in the session's record (read by `session.list`);
- `report`: how they print, through `orchestrator.untrusted`.
"""
