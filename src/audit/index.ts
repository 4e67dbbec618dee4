// The audit trail: a hash-chained, tamper-evident record of issuances, denials, revocations and admin actions.
export * from './audit-log.ts';
export { MemoryAuditLog, type MemoryAuditLogOptions, type StoredAuditEntry } from './memory.audit.ts';
export { auditKeys, RedisAuditLog, type RedisAuditLogOptions } from './redis.audit.ts';
