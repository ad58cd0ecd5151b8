import CRabbitMQ
import CRabbitMQShims
import Logging

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Opens a librabbitmq connection: the socket (TCP or TLS), the AMQP handshake and the login, trying each endpoint in
/// turn. Runs on the connection's I/O thread before its loop starts; every call blocks for at most the endpoint's
/// connection timeout.
struct Handshake {
    /// A connection that completed its handshake.
    struct Established {
        var state: amqp_connection_state_t
        var endpoint: AMQPEndpoint
        var channelMax: UInt16
        /// The negotiated heartbeat interval; 0 for none.
        var heartbeatSeconds: Int
        var serverProperties: AMQPTable
    }

    let connectionName: String
    let logger: Logger

    /// The first of `endpoints` that completes the handshake; with several that fail, the error lists each failure.
    func connect(to endpoints: [AMQPEndpoint]) -> Result<Established, AMQPError> {
        var failures: [String] = []
        var lastError = AMQPError(.connectionFailed, message: "no endpoint configured")
        for endpoint in endpoints {
            switch open(endpoint) {
            case .success(let established):
                return .success(established)
            case .failure(let error):
                failures.append("\(endpoint): \(error.message)")
                lastError = error
                logger.debug(
                    "connection attempt failed", metadata: ["amqp.endpoint": "\(endpoint)", "error": "\(error)"])
            }
        }
        if failures.count > 1 {
            lastError.message = "no endpoint accepted the connection: " + failures.joined(separator: "; ")
        }
        return .failure(lastError)
    }

    private func open(_ endpoint: AMQPEndpoint) -> Result<Established, AMQPError> {
        guard let state = amqp_new_connection() else {
            return .failure(AMQPError(.connectionFailed, message: "librabbitmq could not allocate a connection"))
        }
        var keep = false
        defer { if !keep { amqp_destroy_connection(state) } }

        let socket: OpaquePointer
        switch makeSocket(for: endpoint, on: state) {
        case .success(let made): socket = made
        case .failure(let error): return .failure(error)
        }

        var timeout = timeval(endpoint.connectionTimeout)
        let openStatus = amqp_socket_open_noblock(socket, endpoint.host, Int32(endpoint.port), &timeout)
        if openStatus != AMQP_STATUS_OK.rawValue {
            let code: AMQPError.Code = isTLSStatus(openStatus) ? .tlsFailed : .connectionFailed
            return .failure(
                AMQPError(
                    code, message: "cannot connect to \(endpoint.host):\(endpoint.port): \(statusText(openStatus))"))
        }
        amqp_set_handshake_timeout(state, &timeout)
        amqp_set_rpc_timeout(state, &timeout)

        let arena = CArena()
        var clientProperties = arena.table([
            "product": "Warren",
            "platform": "Swift",
            "connection_name": .string(connectionName),
            "capabilities": [
                "consumer_cancel_notify": true,
                "connection.blocked": true,
                "publisher_confirms": true,
                "basic.nack": true,
                "per_consumer_qos": true,
                "authentication_failure_close": true,
            ],
        ])
        let heartbeatSeconds = endpoint.heartbeat.map { Int32(max(1, $0.components.seconds)) } ?? 0
        let reply = warren_amqp_login_plain(
            state, endpoint.virtualHost, Int32(endpoint.channelMax), Int32(endpoint.frameMax), heartbeatSeconds,
            &clientProperties, endpoint.username, endpoint.password)
        if let error = loginError(reply, endpoint: endpoint) { return .failure(error) }

        keep = true
        let negotiatedChannelMax = amqp_get_channel_max(state)
        return .success(
            Established(
                state: state,
                endpoint: endpoint,
                channelMax: negotiatedChannelMax > 0 ? UInt16(clamping: negotiatedChannelMax) : 65535,
                heartbeatSeconds: Int(max(0, amqp_get_heartbeat(state))),
                serverProperties: amqp_get_server_properties(state).map { AMQPTable($0.pointee) } ?? [:]))
    }

    /// A TCP socket, or a TLS one set up from the endpoint's TLS settings.
    private func makeSocket(for endpoint: AMQPEndpoint, on state: amqp_connection_state_t) -> Result<
        OpaquePointer, AMQPError
    > {
        guard let tls = endpoint.tls else {
            guard let socket = amqp_tcp_socket_new(state) else {
                return .failure(AMQPError(.connectionFailed, message: "could not create a socket"))
            }
            return .success(socket)
        }
        if let sni = tls.serverNameIndication, sni != endpoint.host {
            return .failure(
                AMQPError(
                    .invalidArgument,
                    message:
                        "server_name_indication '\(sni)' differs from the host; librabbitmq 0.11 always sends the host name"
                ))
        }
        guard let socket = amqp_ssl_socket_new(state) else {
            return .failure(AMQPError(.tlsFailed, message: "could not create a TLS socket"))
        }
        amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
        amqp_ssl_socket_set_verify_hostname(socket, tls.verifyPeer ? 1 : 0)
        if let ca = tls.caCertificatePath {
            let status = amqp_ssl_socket_set_cacert(socket, ca)
            if status != AMQP_STATUS_OK.rawValue {
                return .failure(AMQPError(.tlsFailed, message: "cannot load CA file \(ca): \(statusText(status))"))
            }
        }
        if let cert = tls.certificatePath, let key = tls.keyPath {
            let status = amqp_ssl_socket_set_key(socket, cert, key)
            if status != AMQP_STATUS_OK.rawValue {
                return .failure(
                    AMQPError(
                        .tlsFailed,
                        message: "cannot load client certificate \(cert) / key \(key): \(statusText(status))"))
            }
        } else if (tls.certificatePath == nil) != (tls.keyPath == nil) {
            return .failure(
                AMQPError(.invalidArgument, message: "a client certificate needs both certfile and keyfile"))
        }
        return .success(socket)
    }

    private func loginError(_ reply: amqp_rpc_reply_t, endpoint: AMQPEndpoint) -> AMQPError? {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return nil
        case AMQP_RESPONSE_SERVER_EXCEPTION where reply.reply.id == AMQP_CONNECTION_CLOSE_METHOD:
            let close = reply.reply.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code = close.reply_code
            let text = close.reply_text.string
            let kind: AMQPError.Code = (code == 403 || code == 530) ? .authenticationFailed : .connectionClosed
            let why =
                code == 530
                ? "vhost '\(endpoint.virtualHost)' is not available to user '\(endpoint.username)'"
                : code == 403
                    ? "user '\(endpoint.username)' was refused (wrong credentials or no access to vhost '\(endpoint.virtualHost)')"
                    : "the broker closed the connection during the handshake"
            return AMQPError(kind, replyCode: code, replyText: text, message: why)
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            let status = reply.library_error
            let code: AMQPError.Code = isTLSStatus(status) ? .tlsFailed : .connectionFailed
            return AMQPError(
                code, message: "AMQP handshake with \(endpoint.host):\(endpoint.port) failed: \(statusText(status))")
        default:
            return AMQPError(.connectionFailed, message: "AMQP handshake with \(endpoint.host):\(endpoint.port) failed")
        }
    }
}
