-- What a key may do: `owner` keys (every key made before roles existed) may also run tenant
-- administration such as the daily run on demand; `integration` keys drive the merchant's
-- systems and may not.
ALTER TABLE api_key ADD COLUMN role TEXT NOT NULL DEFAULT 'owner';
