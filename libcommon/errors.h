/* Coral error codes. Every function returns 0 or a negative CORAL_E* code; the list is
 * one X-macro so the enum and coral_strerror() can never drift apart. */
#ifndef CORAL_ERRORS_H
#define CORAL_ERRORS_H

#define CORAL_ERRORS(X)                                                   \
	X(EINVAL, "invalid argument")                                     \
	X(ENOMEM, "out of memory")                                        \
	X(EIO, "input/output error")                                      \
	X(ENOENT, "not found")                                            \
	X(EEXIST, "already exists")                                       \
	X(EPERM, "permission denied")                                     \
	X(ECONFIG, "configuration error")                                 \
	X(EVERSION, "version mismatch")                                   \
	X(ESIZE, "size mismatch")                                         \
	X(EMAGIC, "bad magic number")                                     \
	X(ETOOBIG, "frame too large")                                     \
	X(EEMPTY, "empty frame")                                          \
	X(EDECODE, "message could not be decoded")                        \
	X(ETIMEDOUT, "timed out")                                         \
	X(ECONN, "connection failed")                                     \
	X(ECLOSED, "connection closed")                                   \
	X(EBUSY, "busy: queue full")                                      \
	X(EFULL, "table full")                                            \
	X(ERUNNING, "already running")                                    \
	X(ENOTRUNNING, "not running")                                     \
	X(EUNSUPPORTED, "request not supported")                          \
	X(EOWNERDEAD, "lock owner died; state repaired")                  \
	X(ENOTLEADER, "not the leader")                                  \
	X(ESYS, "system call failed")                                     \
	X(ENOTCONN, "peer not connected")                                 \
	X(EFENCED, "node is fenced: it has lost its lease or was evicted")\
	X(EEVICTED, "incarnation evicted from the cluster")               \
	X(ECLUSTER, "wrong cluster")                                      \
	X(ERETRY, "answer unknown: retry")                                \
	X(ENOTMASTER, "not the master at this map version: retry")      \
	X(ERECOVERY, "resource needs instance recovery")                 \
	X(EFROZEN, "resource is being remastered: retry")                \
	X(ECONFLICT, "changed meanwhile: compare-and-swap failed")       \
	X(ECANCELED, "cancelled")                                         \
	X(EHELD, "held elsewhere in an incompatible mode")               \
	X(ECORRUPT, "checksum mismatch: data is damaged")                \
	X(ENOSPC, "no space left on the device")                          \
	X(EROFS, "read-only file system")                                 \
	X(EPENDING, "asked for: not done yet")                           \
	X(EJOINING, "the node is not on the directory's ring yet: retry") \
	X(EDEADLK, "deadlock: this wait was chosen to break a cycle of waits")  \
	X(EDIVERGED, "the copies of a redo thread diverge: another history")

enum coral_err {
	CORAL_OK = 0,
#define CORAL__ERR_ENUM(name, text) CORAL_##name,
	CORAL__ERR_FIRST_ = -1000,
	CORAL_ERRORS(CORAL__ERR_ENUM)
#undef CORAL__ERR_ENUM
	CORAL__ERR_LAST_
};

/* Text for a CORAL_E* code (negative) or 0; never NULL. */
const char *coral_strerror(int code);
/* The CORAL_E* code of a failed write's errno: ENOSPC (and EDQUOT), EROFS, else EIO. */
int coral_err_from_errno(int e);

#endif
