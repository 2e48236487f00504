"""What each mail provider posts to its tracking webhook, in its documented format.

Shapes from the providers' documentation (and django-anymail's tests of its webhook views):
Amazon SES notifications inside an SNS envelope, SendGrid's batched JSON array, Mailgun's signed
JSON (webhooks since 2018), Postmark's one JSON object per event. The test client posts them to
the real anymail URLs, as the provider would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

from django.test import Client

SECRET = "esp:webhook-secret-for-tests"
MAILGUN_SIGNING_KEY = "key-mailgun-signing-for-tests"


def basic_auth(secret: str = SECRET) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": "Basic " + base64.b64encode(secret.encode()).decode()}


# Amazon SES (SNS) ------------------------------------------------------------------------------


def ses_notification(ses_event: dict[str, Any], sns_id: str | None = None) -> dict[str, Any]:
    """An SNS Notification envelope around an SES event (SNS posts it as text/plain)."""
    return {
        "Type": "Notification",
        "MessageId": sns_id or str(uuid.uuid4()),
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:ses-events",
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(ses_event),
        "Timestamp": "2025-03-26T17:58:59.675Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLE==",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-x.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&x=y",
    }


def ses_mail(message_id: str, to: str) -> dict[str, Any]:
    return {
        "timestamp": "2025-03-26T17:58:50.000Z",
        "source": "news@engineering.example.edu",
        "messageId": message_id,
        "destination": [to],
        "headersTruncated": False,
    }


def ses_bounce(message_id: str, to: str, bounce_type: str = "Permanent") -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General" if bounce_type == "Permanent" else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": to,
                    "status": "5.1.1",
                    "action": "failed",
                    "diagnosticCode": f"smtp; 550 5.1.1 <{to}>... User unknown",
                }
            ],
            "timestamp": "2025-03-26T17:58:58.000Z",
            "feedbackId": str(uuid.uuid4()),
            "reportingMTA": "dns; email.example.com",
        },
        "mail": ses_mail(message_id, to),
    }


def ses_complaint(message_id: str, to: str) -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "userAgent": "AnyCompany Feedback Loop (V0.01)",
            "complainedRecipients": [{"emailAddress": to}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2025-03-26T17:58:58.000Z",
            "feedbackId": str(uuid.uuid4()),
        },
        "mail": ses_mail(message_id, to),
    }


def ses_delivery(message_id: str, to: str) -> dict[str, Any]:
    return {
        "notificationType": "Delivery",
        "delivery": {
            "timestamp": "2025-03-26T17:58:58.000Z",
            "recipients": [to],
            "processingTimeMillis": 546,
            "reportingMTA": "a8-70.smtp-out.amazonses.com",
            "smtpResponse": "250 ok:  Message 64111812 accepted",
        },
        "mail": ses_mail(message_id, to),
    }


def post_ses(client: Client, notification: dict[str, Any], **extra: str):
    return client.post(
        "/webhooks/anymail/amazon_ses/tracking/",
        data=json.dumps(notification),
        content_type="text/plain; charset=UTF-8",
        HTTP_X_AMZ_SNS_MESSAGE_TYPE=notification["Type"],
        HTTP_X_AMZ_SNS_MESSAGE_ID=notification["MessageId"],
        **extra,
    )


# SendGrid --------------------------------------------------------------------------------------


def sendgrid_event(event: str, to: str, **fields: Any) -> dict[str, Any]:
    """One event of SendGrid's Event Webhook; custom args (our metadata) are merged in."""
    return {
        "email": to,
        "timestamp": int(time.time()),
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "category": ["newsletter"],
        "sg_event_id": fields.pop("sg_event_id", uuid.uuid4().hex),
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **fields,
    }


def post_sendgrid(client: Client, events: list[dict[str, Any]], **extra: str):
    return client.post(
        "/webhooks/anymail/sendgrid/tracking/",
        data=json.dumps(events),
        content_type="application/json",
        **extra,
    )


# Mailgun ---------------------------------------------------------------------------------------


def mailgun_signed(event_data: dict[str, Any], key: str = MAILGUN_SIGNING_KEY) -> dict[str, Any]:
    timestamp, token = str(int(time.time())), uuid.uuid4().hex
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    return {
        "signature": {"timestamp": timestamp, "token": token, "signature": signature},
        "event-data": event_data,
    }


def mailgun_failed(to: str, message_id: str, variables: dict[str, str], **fields: Any) -> dict:
    return {
        "id": uuid.uuid4().hex[:22],
        "event": "failed",
        "severity": fields.pop("severity", "permanent"),
        "reason": fields.pop("reason", "bounce"),
        "timestamp": time.time(),
        "log-level": "error",
        "recipient": to,
        "recipient-domain": to.split("@")[1],
        "user-variables": variables,
        "message": {"headers": {"to": to, "message-id": message_id, "from": "news@x.edu"}},
        "delivery-status": {
            "attempt-no": 1,
            "description": "",
            "code": fields.pop("code", 550),
            "message": f"5.1.1 The email account <{to}> does not exist.",
        },
        **fields,
    }


def post_mailgun(client: Client, payload: dict[str, Any], **extra: str):
    return client.post(
        "/webhooks/anymail/mailgun/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        **extra,
    )


# Postmark --------------------------------------------------------------------------------------


def postmark_spam_complaint(to: str, message_id: str, metadata: dict[str, str]) -> dict:
    return {
        "RecordType": "SpamComplaint",
        "MessageStream": "outbound",
        "ID": 42 + len(to),
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "Tag": "newsletter",
        "MessageID": message_id,
        "Metadata": metadata,
        "ServerID": 1234,
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
        "Email": to,
        "From": "news@engineering.example.edu",
        "BouncedAt": "2025-03-26T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": False,
        "Subject": "Spring news",
    }


def postmark_bounce(to: str, message_id: str, metadata: dict[str, str], kind: str) -> dict:
    return {
        "RecordType": "Bounce",
        "MessageStream": "outbound",
        "ID": 4323372036854775807,
        "Type": kind,
        "TypeCode": 1 if kind == "HardBounce" else 4096,
        "Name": "Hard bounce" if kind == "HardBounce" else "Soft bounce",
        "Tag": "newsletter",
        "MessageID": message_id,
        "Metadata": metadata,
        "ServerID": 23,
        "Description": "The server was unable to deliver your message (ex: unknown user).",
        "Details": f"smtp;550 5.1.1 <{to}>: Recipient address rejected",
        "Email": to,
        "From": "news@engineering.example.edu",
        "BouncedAt": "2025-03-26T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Spring news",
    }


def postmark_delivery(to: str, message_id: str, metadata: dict[str, str]) -> dict:
    return {
        "RecordType": "Delivery",
        "ServerID": 23,
        "MessageStream": "outbound",
        "MessageID": message_id,
        "Recipient": to,
        "Tag": "newsletter",
        "DeliveredAt": "2025-03-26T16:33:54.9070259Z",
        "Details": "Test delivery webhook details",
        "Metadata": metadata,
    }


def post_postmark(client: Client, payload: dict[str, Any], **extra: str):
    return client.post(
        "/webhooks/anymail/postmark/tracking/",
        data=json.dumps(payload),
        content_type="application/json",
        **extra,
    )
