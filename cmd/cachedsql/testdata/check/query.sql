-- A fixture in the shape of examples/sqlc/query.sql, plus the cases check
-- must get right: semicolons in strings and comments, statements without a
-- sqlc header, function bodies.

-- name: GetOrg :one
SELECT * FROM orgs WHERE id = $1;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE lower(email) = lower(sqlc.arg(email));

-- name: GetUserByHandle :one
SELECT id, email FROM users WHERE org_id = @org_id AND handle = @handle AND status <> 'deleted';

-- name: FindUsers :many
SELECT * FROM users WHERE handle = 'a;b' /* ; */ AND org_id = $1;

-- name: CountUsers :one
SELECT count(*) FROM users WHERE org_id = $1;

-- name: ChangeEmail :execrows
UPDATE users SET email = $2 WHERE id = $1;

-- name: RecordLogin :exec
UPDATE users SET last_login = now() WHERE id = $1;

-- name: DeleteOrg :exec
DELETE FROM orgs WHERE id = $1;

-- name: CreateAudit :exec
INSERT INTO audit_log (what) VALUES ($1);

SET search_path = app, public;

CREATE FUNCTION touch_user(bigint) RETURNS void LANGUAGE sql
BEGIN ATOMIC
  UPDATE users SET last_login = now() WHERE id = $1;
END;

TRUNCATE users
