/* Unix-socket IPC on libevent, at the level of frames. The server accepts local clients,
 * reads each one's credentials with SO_PEERCRED (admin or read-only), reassembles frames,
 * and bounds both the number of clients and each client's output queue: a client that does
 * not read its answers stops being read until it does. The async client is the daemons'
 * side; tools use the blocking helpers in frame.h through ctl.h. */
#ifndef CORAL_IPC_H
#define CORAL_IPC_H

#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct event_base;
struct coral_ipc_server;
struct coral_ipc_conn;
struct coral_ipc_client;

struct coral_ipc_peer {
	pid_t pid;
	uid_t uid;
	gid_t gid;
	bool admin;
};

/* Counters the server keeps up to date (may live in the SGA); any may be NULL. */
struct coral_ipc_counters {
	_Atomic uint64_t *frames;
	_Atomic uint64_t *refused;
	_Atomic uint32_t *clients;
	_Atomic uint64_t *idle_closed;
};

typedef void (*coral_ipc_frame_fn)(void *arg, struct coral_ipc_conn *conn, const uint8_t *data,
				   uint32_t len);

struct coral_ipc_server_opts {
	const char *path;
	/* instead of path: a TCP listener on tcp_host:tcp_port, for clients of other machines
	 * (no credentials: never admin; TCP_NODELAY) */
	const char *tcp_host;
	int tcp_port;
	size_t max_frame;
	int max_clients;
	size_t out_queue;
	int64_t admin_uid;   /* -1: our own uid */
	int64_t admin_gid;   /* -1: none */
	int64_t idle_ms;     /* a client idle this long is closed (0: never) */
	/* for a client refused because all slots are taken: who serves ("node 2's lmsd") and the
	 * option that caps the clients ("[lmsd] max_clients"); the last slot is kept for an admin */
	const char *who, *limit;
	/* TCP only: TLS with this context (the caller's: it outlives the server), the client's
	 * certificate required and verified by the handshake */
	struct ssl_ctx_st *ssl_ctx;
	coral_ipc_frame_fn on_frame;
	void *arg;
	struct coral_ipc_counters counters;
};

/* Who may send admin requests: root, our own uid, admin_uid, or primary group admin_gid. */
bool coral_ipc_is_admin(uid_t uid, gid_t gid, int64_t admin_uid, int64_t admin_gid);

struct coral_ipc_server *coral_ipc_server_new(struct event_base *base,
					      const struct coral_ipc_server_opts *opts, char *err,
					      size_t errsz);
/* Applies reloadable limits; existing clients keep their admin status. */
void coral_ipc_server_set_limits(struct coral_ipc_server *srv, int max_clients, size_t out_queue,
				 int64_t admin_uid, int64_t admin_gid, int64_t idle_ms);
/* Closes every client, the listener, and unlinks the socket. */
void coral_ipc_server_free(struct coral_ipc_server *srv);
int coral_ipc_server_nclients(const struct coral_ipc_server *srv);

const struct coral_ipc_peer *coral_ipc_conn_peer(const struct coral_ipc_conn *conn);
/* A client's id, never reused; an answer given later looks the client up by it (NULL if it
 * has gone). The table is bounded by max_clients, so the lookup walks at most that many. */
uint64_t coral_ipc_conn_id(const struct coral_ipc_conn *conn);
/* The client is not closed for being idle: it waits for what the daemon will send it (a
 * session's subscription to its locks' events). */
void coral_ipc_conn_keep(struct coral_ipc_conn *conn);
/* One more (more true) or one fewer request of the client waits for an answer given later
 * (a lock queued behind its holder): a client that waits is not idle, however long. */
void coral_ipc_conn_waiting(struct coral_ipc_conn *conn, bool more);
struct coral_ipc_conn *coral_ipc_server_conn(struct coral_ipc_server *srv, uint64_t id);
/* Queues msg as a frame to the client; past the queue bound the client is no longer read. */
int coral_ipc_conn_send(struct coral_ipc_conn *conn, const ProtobufCMessage *msg);
/* A value the server's owner keeps per client (0 at accept): what the client has shown. */
void coral_ipc_conn_set_tag(struct coral_ipc_conn *conn, uint64_t tag);
uint64_t coral_ipc_conn_tag(const struct coral_ipc_conn *conn);
/* The TLS session of a client of a server with ssl_ctx, else NULL. */
struct ssl_st *coral_ipc_conn_ssl(const struct coral_ipc_conn *conn);
/* Closes the client after this callback, logging the reason and counting it as refused. */
void coral_ipc_conn_refuse(struct coral_ipc_conn *conn, const char *reason);

/* Async client. on_frame gets every frame; on_close is called once when the connection
 * ends (err 0: closed by us). */
typedef void (*coral_ipc_client_frame_fn)(void *arg, const uint8_t *data, uint32_t len);
typedef void (*coral_ipc_client_close_fn)(void *arg, int err);
struct coral_ipc_client *coral_ipc_client_new(struct event_base *base, const char *path,
					      size_t max_frame, size_t out_queue,
					      coral_ipc_client_frame_fn on_frame,
					      coral_ipc_client_close_fn on_close, void *arg);
/* CORAL_EBUSY when the output queue is past its bound: the producer must wait. */
int coral_ipc_client_send(struct coral_ipc_client *c, const ProtobufCMessage *msg);
void coral_ipc_client_free(struct coral_ipc_client *c);
/* True once the connection is gone (the peer closed it or an error ended it): nothing more
 * can be sent on it; the caller makes a new client. */
bool coral_ipc_client_closed(const struct coral_ipc_client *c);

/* Blocking connect for tools; CORAL_ENOTRUNNING when nothing listens at path. */
int coral_ipc_connect(const char *path, int *fd);

#endif
