"""Micro-batches: images that arrive together are answered by one call into the classifier.

One worker thread makes every call into the classifier, predictions, explanations and the
warm-up alike. A network keeps its activations in buffers of its own, so two calls at once
would write over each other; one thread owning them is safe whatever the library promises about
threads, and it is what batching needs anyway.

The worker takes the first waiting request, then whatever else is waiting, and for `wait`
seconds more whatever arrives, up to `max_batch` images; it answers them with one
predict_proba and hands each request its rows. While it computes, new requests queue up, so
under load batches fill without waiting, and alone a request waits `wait` at most.
"""
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Predict:
    pixels: np.ndarray  # uint8 (N, S, S, 3)
    tta: str
    future: Future = field(default_factory=Future)


@dataclass
class _Call:
    function: object
    args: tuple
    future: Future = field(default_factory=Future)


_STOP = object()


@dataclass
class Stats:
    """What the worker has done: calls into the classifier and the images they answered."""

    batches: int = 0
    images: int = 0
    largest: int = 0  # images in the largest batch
    requests: int = 0  # prediction requests answered
    calls: int = 0  # other calls (explanations)

    def to_dict(self):
        return {"batches": self.batches, "images": self.images, "largest_batch": self.largest,
                "requests": self.requests, "other_calls": self.calls}


class Batcher:
    """The one thread that calls the classifier.

    predict(pixels, tta) -> probabilities (N, M), called on the worker; max_batch: images per
    batch (a larger request is answered alone, whole); wait: seconds to wait for more requests.
    """

    def __init__(self, predict, max_batch=64, wait=0.002):
        self._predict = predict
        self.max_batch = max_batch
        self.wait = wait
        self.stats = Stats()
        self._jobs = queue.SimpleQueue()
        self._held = deque()  # taken from the queue but left for the next batch
        self._thread = threading.Thread(target=self._work, name="cnnfruit-inference", daemon=True)
        self._thread.start()

    def predict(self, pixels, tta="none"):
        """A Future of the probabilities (N, M) of pixels, uint8 (N, S, S, 3)."""
        job = _Predict(pixels, tta)
        self._jobs.put(job)
        return job.future

    def call(self, function, *args):
        """A Future of function(*args), run on the worker thread, alone."""
        job = _Call(function, args)
        self._jobs.put(job)
        return job.future

    def close(self):
        """Answer what is queued, then stop the thread."""
        self._jobs.put(_STOP)
        self._thread.join()

    def _next(self, timeout=None):
        if self._held:
            return self._held.popleft()
        try:
            return self._jobs.get(timeout=timeout) if timeout is None or timeout > 0 else self._jobs.get_nowait()
        except queue.Empty:
            return None

    def _work(self):
        while True:
            job = self._next()
            if job is _STOP:
                return
            if isinstance(job, _Call):
                self._run(job)
            else:
                self._answer(self._gather(job))

    def _gather(self, first):
        """first and the prediction requests with its tta that come within the wait, up to max_batch images."""
        batch, count = [first], len(first.pixels)
        deadline = time.monotonic() + self.wait
        while count < self.max_batch:
            job = self._next(deadline - time.monotonic())
            if job is None:
                break
            if not isinstance(job, _Predict) or job.tta != first.tta or count + len(job.pixels) > self.max_batch:
                self._held.append(job)  # answered in its turn, after this batch
                break
            batch.append(job)
            count += len(job.pixels)
        return batch

    def _answer(self, batch):
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]  # a client that left is skipped
        if not live:
            return
        try:
            probs = self._predict(np.concatenate([job.pixels for job in live]), live[0].tta)
        except BaseException as err:  # noqa: BLE001 - the requests get the error; the worker lives on
            for job in live:
                job.future.set_exception(err)
            return
        stats = self.stats
        stats.batches += 1
        stats.images += len(probs)
        stats.largest = max(stats.largest, len(probs))
        stats.requests += len(live)
        start = 0
        for job in live:
            job.future.set_result(probs[start:start + len(job.pixels)])
            start += len(job.pixels)

    def _run(self, job):
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            result = job.function(*job.args)
        except BaseException as err:  # noqa: BLE001 - as in _answer
            job.future.set_exception(err)
            return
        self.stats.calls += 1
        job.future.set_result(result)
