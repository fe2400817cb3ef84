"""Adaptive micro-batching: requests that wait at the same moment share one estimator call.

A scikit-learn call has a fixed cost (input checks, dispatch) of about the same size as the
arithmetic for hundreds of rows, so under concurrency most of a single-row request's model time
is that fixed cost, paid again for every request. :class:`MicroBatcher` lets concurrent requests
pay it once. The request that opens a batch yields the event loop for one turn; every request
the server had already read joins it meanwhile, and the opener then predicts for all of them.

It is adaptive, so a lone client pays next to nothing for it: yielding is only worth a loop turn
while requests do arrive together. While recent batches found company, every opener yields; once
COMPANY_CREDIT batches in a row found none, requests predict at once, and only every
PROBE_EVERY-th one yields to find out whether concurrency is back. With ``max_delay`` above 0 an
opener always waits that long for more to join, for models whose per-call cost dwarfs a
request's.

A batch does not change an answer: the rows are stacked in order and the result is split back
by offsets, and sklearn predicts every row independently (probabilities can differ in their last
bits, as BLAS may sum a bigger matrix in another order). If the estimator rejects a batch, each of
its requests is retried alone, so only the request whose rows the model refuses gets the 422.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

import numpy as np

from .errors import PredictionFailed
from .model_store import Prediction

PredictRows = Callable[[np.ndarray], Prediction]

# Lone batches in a row after which requests stop waiting for company, and how often a lone
# request then waits anyway, to notice concurrency returning.
COMPANY_CREDIT = 16
PROBE_EVERY = 16


class MicroBatcher:
    """Coalesces concurrent :meth:`predict` calls into estimator calls of at most ``max_rows``
    rows. Runs on the event loop thread only (as the estimator calls do)."""

    def __init__(
        self,
        predict_rows: PredictRows,
        *,
        max_rows: int,
        max_delay: float = 0.0,
        observe_batch: Callable[[int], None] | None = None,
    ) -> None:
        if max_rows < 2:
            raise ValueError("max_rows must be at least 2 for batching to mean anything")
        self._predict_rows = predict_rows
        self._observe_batch = observe_batch or _ignore
        self.max_rows = max_rows
        self.max_delay = max_delay
        self._pending: list[tuple[np.ndarray, asyncio.Future[Prediction]]] = []
        self._pending_rows = 0
        # Batches still to form before a run of lone requests ends batching mode, and lone
        # requests since batching mode was last tried (see _wants_company).
        self._company_credit = 0
        self._lone_since_probe = 0

    async def predict(self, rows: np.ndarray) -> Prediction:
        if len(rows) >= self.max_rows or (not self._pending and not self._wants_company()):
            # A full batch on its own, or a lone request while nobody else is around.
            self._observe_batch(1)
            return self._predict_rows(rows)
        if self._pending_rows + len(rows) > self.max_rows:
            self.flush()
        future: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        # The request that opens a batch leads it: it yields the loop once (or max_delay), so
        # requests already read join, then predicts for all of them. The others only wait.
        leads = not self._pending
        self._pending.append((rows, future))
        self._pending_rows += len(rows)
        if self._pending_rows >= self.max_rows:
            self.flush()
        if leads and not future.done():
            try:
                await asyncio.sleep(self.max_delay)
            finally:
                # Still pending means this is still the open batch (a full one was flushed by
                # whoever filled it). Flushed even if the leader was cancelled: the others wait.
                if not future.done():
                    self.flush()
        return await future

    def _wants_company(self) -> bool:
        """Whether a request that would open a batch should wait the loop's turn for others.

        Waiting costs a lone request one more turn of the event loop, so it is only done while
        recent batches found company, and on every PROBE_EVERY-th lone request to find out
        whether they would now: one client at a time then pays it on a few percent of requests,
        and concurrent clients are batched again within a few requests of arriving.
        """
        if self.max_delay > 0 or self._company_credit > 0:
            return True
        self._lone_since_probe += 1
        if self._lone_since_probe >= PROBE_EVERY:
            self._lone_since_probe = 0
            return True
        return False

    def flush(self) -> None:
        """Predict everything pending now and settle its futures."""
        batch, self._pending, self._pending_rows = self._pending, [], 0
        if not batch:
            return
        self._observe_batch(len(batch))
        if len(batch) == 1:
            self._company_credit = max(0, self._company_credit - 1)
            _settle(batch[0][1], functools.partial(self._predict_rows, batch[0][0]))
            return
        self._company_credit = COMPANY_CREDIT
        try:
            result = self._predict_rows(np.concatenate([rows for rows, _ in batch]))
        except PredictionFailed:
            # One request's rows may be what the estimator refuses: find out which, alone.
            for rows, future in batch:
                _settle(future, functools.partial(self._predict_rows, rows))
            return
        except BaseException as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for rows, future in batch:
            end = start + len(rows)
            if not future.done():  # the waiting request may have been cancelled meanwhile
                probabilities = None if result.probabilities is None else result.probabilities[start:end]
                future.set_result(Prediction(result.predictions[start:end], probabilities))
            start = end


def _ignore(_: int) -> None:
    pass


def _settle(future: asyncio.Future[Prediction], compute: Callable[[], Prediction]) -> None:
    if future.done():
        return
    try:
        future.set_result(compute())
    except Exception as exc:  # noqa: BLE001 - it is the waiting request's to raise, not ours
        future.set_exception(exc)
