"""The `AgentSpec` a session hands its runtime: where the agent's folders are and the HUTCH_*
settings the runner reads. Never a credential (docs/ARCHITECTURE.md, invariant 10): the model API is
reached through the proxy socket named here."""

from __future__ import annotations

from pathlib import Path

from actors.runtime.base import AgentSpec
from actors.session.info import SessionInfo, SessionSettings


def agent_spec(info: SessionInfo, settings: SessionSettings, proxy_socket: Path | None) -> AgentSpec:
    env = {
        **settings.agent_env,
        "HUTCH_SESSION_DIR": str(info.layout.root),
        "HUTCH_AGENT_DIR": str(info.agent_dir),
        "TZ": settings.timezone,
        "HUTCH_STOP_GRACE": f"{settings.stop_grace_s:g}",
    }
    if info.model is not None:
        env["HUTCH_MODEL"] = info.model
    if info.global_dir is not None:
        env["HUTCH_GLOBAL_DIR"] = str(info.global_dir)
    if proxy_socket is not None:
        env["HUTCH_PROXY_SOCKET"] = str(proxy_socket)
    return AgentSpec(
        session_id=info.session_id,
        agent_group=info.agent_group,
        session_dir=info.layout.root,
        agent_dir=info.agent_dir,
        global_dir=info.global_dir,
        env=env,
        user=info.user,
        limits=info.limits,
    )
