-- Recalls: the devices a recall names (product, optionally lot and registered before), what it
-- does to their certificates, and which certificates it changed (so `recall release` lifts
-- exactly its own holds). An unreleased recall also stops issuance to the devices it names.

CREATE TABLE recalls (
    id                BIGSERIAL PRIMARY KEY,
    product           TEXT NOT NULL,
    lot               TEXT,
    registered_before BIGINT,
    action            TEXT NOT NULL CHECK (action IN ('hold', 'revoke')),
    reason            TEXT NOT NULL,
    actor             TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    completed_at      BIGINT,
    released_at       BIGINT,
    certificates      BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE recall_certificates (
    recall_id BIGINT NOT NULL REFERENCES recalls (id),
    serial    TEXT NOT NULL REFERENCES certificates (serial),
    PRIMARY KEY (recall_id, serial)
);

CREATE INDEX devices_product_lot ON devices (product, lot);
