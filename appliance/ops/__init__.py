"""Operations: service manager notification, admin accounts, backups, updates, health."""
