"""Admission: runs in every replica, leader or not.

The webhook's handlers (pod injection, Certificate validation: `handlers`), the webhook
configurations it registers (`webhook_config`, pure), and its own serving certificate
(`serving`, pure), both kept current by `serving_keeper`.
"""
