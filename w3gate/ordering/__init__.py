"""Crust ordering: the work that turns wanted content into paid, replicated, renewed storage orders.

- :mod:`~w3gate.ordering.lifecycle`: an order's states, verdicts and transitions (the rules, nothing else);
- :mod:`~w3gate.ordering.pipeline`: the components of one service and their status (:class:`Ordering`);
- :mod:`~w3gate.ordering.fetcher`: the fetch stage (the operator's IPFS node holds and measures the content);
- :mod:`~w3gate.ordering.submitter`: queued orders and due renewals -> signed batches -> verdicts;
- :mod:`~w3gate.ordering.poller`: the chain's file records -> pinned, renewal due, failed, re-ordered;
- :mod:`~w3gate.ordering.budget`: the daily CRU budget; :mod:`~w3gate.ordering.webhook`: the operator's notices;
- :mod:`~w3gate.ordering.leader`: which instance of a fleet runs the chain work;
- :mod:`~w3gate.ordering.connection`: a chain client (:class:`w3gate.crust.chain.ChainClient`) used from trio;
- :mod:`~w3gate.ordering.status`: the read-only status records /healthz and /metrics show.

Imports go one way: pipeline -> submitter, poller -> connection, budget -> status, lifecycle; everything here
reaches the chain only through :mod:`w3gate.crust.chain` and the store through :mod:`w3gate.store`.
"""
