"""A data module whose second DDP process fails, for the operator's failure test."""

from __future__ import annotations

import os

from flights.model import FlightDataModule


class DataThatFailsOnRankOne(FlightDataModule):
    def prepare(self) -> None:
        if os.environ.get("RANK") == "1":
            raise RuntimeError("rank 1 cannot read its shard")
        super().prepare()
