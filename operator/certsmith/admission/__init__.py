"""Admission: runs in every replica, leader or not.

The webhook's handlers (pod injection, Certificate validation), the webhook configurations
it registers, and its own serving certificate.
"""
