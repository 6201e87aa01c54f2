"""Where a model may go by the accounts' own lists from Qwen (models/listed.py, read in the background): never to
an account whose list leaves it out while another's names it; a model no list names may be new since the lists
were read — it goes as before (Qwen's word decides) and the lists are read again. Qwen's own `model_not_found`
for a model on an account is the same fact, learned: the model leaves that account's list until the list is read
again (at once), and another account whose list names it takes the request. An account whose list could not be
read is unknown, never empty: it may serve any model, so it is tried for a model a read list lacks (before that
account, which is not), and while one is unknown no model is "on no account". Nothing here waits: the lists are
the cache."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ..accounts import Credential
from ..errors import UNLISTED, UpstreamError
from ..exchange import Exchange, note
from ..models.model_map import LiveModels

Unknown = Callable[[Exchange, UpstreamError], UpstreamError]  # the 404 naming the models served (the engine's)


def unlisted(ex: Exchange, cred: Credential, lists: LiveModels, unknown: Unknown) -> UpstreamError | None:
    """The refusal (kind UNLISTED: the retry policy sends it elsewhere) when the account's list leaves the model
    out while another account's names it, or another's list is unknown and not yet tried; None: send it."""
    model = ex.attempt.model
    lists.keep_current(cred.account)  # its list read again hourly while it serves (in the background)
    if not lists.is_live(cred.account) or model in lists.ids(cred.account) or ex.attempt.leg.passthrough:
        return None
    if not any(m == model for m, _ in lists.listed()):
        if (maybe := _unknown_elsewhere(ex, cred, lists)):
            ex.notes.append(f"{model} is not in {cred.account}'s own model list (read from Qwen) and {maybe}'s list "
                            f"could not be read: tried there first")
            return dataclasses.replace(unknown(ex, UpstreamError(UNLISTED, 404, "", "invalid_request_error")),
                                       kind=UNLISTED)
        if (said := lists.known_absent(model)) is not None:  # Qwen said so moments ago: answered here
            note(ex.notes, f"{model}: Qwen answered model_not_found for it {lists.clock() - said:.0f} s ago and no "
                           "account's list names it: answered here (Qwen is asked again after 10 minutes)")
            return dataclasses.replace(unknown(ex, UpstreamError(UNLISTED, 404, "", "invalid_request_error")),
                                       kind=UNLISTED)
        lists.stale(cred.account)
        lists.wanted()
        return None
    ex.notes.append(f"{model} is not in {cred.account}'s own model list (read from Qwen): not sent there")
    return dataclasses.replace(unknown(ex, UpstreamError(UNLISTED, 404, "", "invalid_request_error")), kind=UNLISTED)


def not_found(ex: Exchange, err: UpstreamError, lists: LiveModels, *, denied: bool = False) -> UpstreamError:
    """Qwen answered `model_not_found` (`denied`: a 403 that denies this key the model) for the model on this
    account: it leaves the account's list (read again at once); when another account's list names it, the refusal
    is UNLISTED (sent there), else Qwen's, as it is."""
    cred, model = ex.attempt.cred, ex.attempt.model
    if cred is None or not model or not lists.is_live(cred.account) or ex.attempt.leg.passthrough:
        return err
    lists.refused(cred.account, model)
    said = "403 AccessDenied (this key may not call it)" if denied else "model_not_found"
    ex.notes.append(f"Qwen answered {said} for {model} on {cred.account}: not sent there again until its "
                    "list is read again")
    named = [kind for m, kind in lists.listed() if m == model]
    if not named and (maybe := _unknown_elsewhere(ex, cred, lists)):  # it may be there: never "on no account"
        ex.notes.append(f"{maybe}'s list could not be read: tried there")
        return dataclasses.replace(err, kind=UNLISTED)
    if not named and not denied:  # no account has it, by every list and by Qwen's word: the next ask is answered
        lists.gone(model)  # here a while (a denied model exists: its 403 stays Qwen's to say)
    elsewhere = any(kind not in ex.attempt.tried and kind != cred.account for kind in named)
    return dataclasses.replace(err, kind=UNLISTED) if elsewhere else err


def _unknown_elsewhere(ex: Exchange, cred: Credential, lists: LiveModels) -> str:
    """An account of the same provider, not yet tried, whose list could not be read (it may serve the model); ""
    when none."""
    return next((kind for kind in lists.kinds(cred.provider) if kind != cred.account and kind not in ex.attempt.tried
                 and lists.unknown(kind)), "")
