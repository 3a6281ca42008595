/**
 * Engine-neutral entry points for backups: a consistent copy of a home's store, and an integrity
 * check of a copy. Only the embedded SQLite engine has them; a server engine (PostgreSQL) is backed
 * up with its own tools (pg_dump), see docs/operations.md.
 */
export { snapshotSqlite as snapshotStore, checkSqliteIntegrity as checkStoreIntegrity, type SnapshotProgress } from './sqlite/snapshot.js';
