#ifndef WARREN_CRABBITMQ_SHIMS_H
#define WARREN_CRABBITMQ_SHIMS_H

#include <amqp.h>

/// Non-variadic wrapper of `amqp_login_with_properties` with SASL PLAIN, which Swift cannot call directly.
amqp_rpc_reply_t warren_amqp_login_plain(amqp_connection_state_t state,
                                         const char *vhost,
                                         int channel_max,
                                         int frame_max,
                                         int heartbeat,
                                         const amqp_table_t *client_properties,
                                         const char *user,
                                         const char *password);

#endif
