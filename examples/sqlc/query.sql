-- Key lookups: cachedsql serves these from the cache.

-- name: GetOrg :one
SELECT * FROM orgs WHERE id = $1;

-- name: GetOrgBySlug :one
SELECT * FROM orgs WHERE slug = $1;

-- name: GetUser :one
SELECT * FROM users WHERE id = $1;

-- name: GetUserByEmail :one
SELECT * FROM users WHERE lower(email) = lower(sqlc.arg(email));

-- name: GetUserByHandle :one
SELECT * FROM users WHERE org_id = $1 AND handle = $2;

-- Everything else goes to the database; writes flush what they touch.

-- name: ListUsersByOrg :many
SELECT * FROM users WHERE org_id = $1 ORDER BY id;

-- name: CreateOrg :one
INSERT INTO orgs (slug, name) VALUES ($1, $2) RETURNING *;

-- name: CreateUser :one
INSERT INTO users (org_id, email, handle, status, profile)
VALUES ($1, $2, $3, $4, $5)
RETURNING *;

-- name: RenameUser :exec
UPDATE users SET handle = $2 WHERE id = $1;

-- name: ChangeEmail :execrows
UPDATE users SET email = $2 WHERE id = $1;

-- name: RecordLogin :exec
UPDATE users SET last_login = $2 WHERE id = $1;

-- name: UpdateProfile :exec
UPDATE users SET profile = $2 WHERE id = $1;

-- name: SuspendOrg :execrows
UPDATE users SET status = 'suspended' WHERE org_id = $1 AND status = 'active';

-- name: DeleteUser :execrows
DELETE FROM users WHERE id = $1;

-- name: DeleteOrg :exec
DELETE FROM orgs WHERE id = $1;
