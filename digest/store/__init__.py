"""The database: one :class:`Store` per database, with a record class per concept.

``store.issues``, ``store.subscribers``, ``store.deliveries``, ``store.list_ids`` and
``store.returns`` (what came back after a send) read and write their own tables;
:mod:`digest.delivery.ledger` sends one issue's deliveries.
"""

from digest.store.database import Store
from digest.store.deliveries import DeliveryRecords
from digest.store.issues import IssueRecords
from digest.store.list_ids import ListIdRecords
from digest.store.returns import ReturnRecords
from digest.store.subscribers import SubscriberRecords, subscriber_from_row
from digest.store.tables import deliveries, issue_articles, issues, list_ids, metadata, subscribers

__all__ = [
    "DeliveryRecords",
    "IssueRecords",
    "ListIdRecords",
    "ReturnRecords",
    "Store",
    "SubscriberRecords",
    "deliveries",
    "issue_articles",
    "issues",
    "list_ids",
    "metadata",
    "subscriber_from_row",
    "subscribers",
]
