"""The web console under /console: server-rendered pages over the same service
functions the API calls, signed in with an API key (its role applies)."""
