"""Access to the dashboard: with a token set, a session sees nothing but the token prompt until it
has presented the token; without one, the app serves on loopback addresses only."""

from __future__ import annotations

import streamlit as st

from shardlens.dashboard.launch import MIN_TOKEN_LENGTH, TOKEN_ENV, is_loopback, token_matches
from shardlens.dashboard.state import Settings


def access_gate(settings: Settings) -> None:
    """Stop the script run here until this session has presented the token: nothing below (no
    catalog, no review widget, no callback) exists for a session that has not."""
    address = st.get_option("server.address")
    if settings.token is None:
        if not is_loopback(address):
            st.error(
                f"this dashboard serves on {address or 'every interface'} without an access token: set {TOKEN_ENV} "
                f"(at least {MIN_TOKEN_LENGTH} characters) or bind 127.0.0.1 (`shardlens review` does both checks)"
            )
            st.stop()
        return
    if st.session_state.get("auth_ok") is True:
        return
    given = st.query_params.get("token")
    if given is not None:
        del st.query_params["token"]  # out of the address bar, the history and screenshots
        if token_matches(given, settings.token):
            st.session_state["auth_ok"] = True
            return
        st.session_state["auth_failed"] = True
    st.markdown("## shardlens review")
    with st.columns([2, 3])[0], st.form("login", border=True, enter_to_submit=True):
        st.text_input("Access token", type="password", key="auth_token")
        submitted = st.form_submit_button("Open the dashboard", type="primary")
    if submitted:
        if token_matches(st.session_state.get("auth_token"), settings.token):
            st.session_state["auth_ok"] = True
            st.session_state.pop("auth_failed", None)
            st.rerun()
        st.session_state["auth_failed"] = True
    if st.session_state.get("auth_failed"):
        st.error("wrong access token")
    st.caption("This dashboard asks every browser session for the token that `shardlens review` was started with.")
    st.stop()
