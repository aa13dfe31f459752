"""email_ingest: mail in over IMAP, consultants' replies out over SMTP."""
