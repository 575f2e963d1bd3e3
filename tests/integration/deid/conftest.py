"""Fixtures of the deid service tests."""

from __future__ import annotations

import pytest

from radstream.common import topics
from radstream.deid.app import DeidTopics


@pytest.fixture
async def deid_topics(new_topic) -> DeidTopics:
    """Fresh copies of the topics deid reads and writes, so each test sees only its own events."""
    return DeidTopics(
        study_received=await new_topic(topics.STUDY_RECEIVED_V1),
        completed=await new_topic(topics.DEID_COMPLETED_V1),
        review=await new_topic(topics.REVIEW_TASK_V1),
        decision=await new_topic(topics.REVIEW_DECISION_V1),
    )
