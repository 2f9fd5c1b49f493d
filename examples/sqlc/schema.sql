-- The example schema. The test runs this file as it is, in a schema of its
-- own (search_path), so every name here is unqualified.

CREATE TYPE user_status AS ENUM ('active', 'suspended', 'deleted');

CREATE TABLE orgs (
    id   bigserial PRIMARY KEY,
    slug text NOT NULL UNIQUE,
    name text NOT NULL
);

CREATE TABLE users (
    id         bigserial PRIMARY KEY,
    org_id     bigint NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    email      text NOT NULL,
    handle     text NOT NULL,
    status     user_status NOT NULL DEFAULT 'active',
    profile    jsonb NOT NULL DEFAULT '{}',
    last_login timestamptz,
    UNIQUE (org_id, handle)
);

-- Email addresses are unique whatever their case.
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));
