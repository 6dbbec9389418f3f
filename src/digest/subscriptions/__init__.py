"""Subscribers, their theme subscriptions, CSV imports and the signed tokens that act for them."""
