"""Callers who sign in through an identity provider (``[auth.oidc]``): an
IdP-issued JWT is checked locally against the issuer's keys (tokens.py),
the user's groups give the policy (policy.py), and the keys are fetched at
start and again when a token names one not seen yet (issuer.py). No call
to the IdP is made per request."""
