import CRabbitMQ

/// A synchronous AMQP method a channel sends, with everything it needs in Swift values, so it can cross from a
/// task to the I/O thread. The I/O thread turns it into librabbitmq structs with ``send(on:channel:arena:)``.
enum ChannelMethod: Sendable {
    case channelOpen
    case channelClose
    /// `confirm.select`; the timeout is not sent, it bounds each publish's wait for its confirm.
    case confirmSelect(timeout: Duration?)
    case basicQos(prefetchCount: UInt16, global: Bool)
    case exchangeDeclare(
        name: String, type: String, passive: Bool, durable: Bool, autoDelete: Bool, isInternal: Bool,
        arguments: AMQPTable)
    case exchangeDelete(name: String, ifUnused: Bool)
    case exchangeBind(destination: String, source: String, routingKey: String, arguments: AMQPTable)
    case exchangeUnbind(destination: String, source: String, routingKey: String, arguments: AMQPTable)
    case queueDeclare(
        name: String, passive: Bool, durable: Bool, exclusive: Bool, autoDelete: Bool, arguments: AMQPTable)
    case queueBind(queue: String, exchange: String, routingKey: String, arguments: AMQPTable)
    case queueUnbind(queue: String, exchange: String, routingKey: String, arguments: AMQPTable)
    case queuePurge(name: String)
    case queueDelete(name: String, ifUnused: Bool, ifEmpty: Bool)
    case basicConsume(queue: String, consumerTag: String, noAck: Bool, exclusive: Bool, arguments: AMQPTable)
    case basicCancel(consumerTag: String)
    case basicGet(queue: String, noAck: Bool)

    /// The reply method that completes this request.
    var expectedReply: amqp_method_number_t {
        switch self {
        case .channelOpen: AMQP_CHANNEL_OPEN_OK_METHOD
        case .channelClose: AMQP_CHANNEL_CLOSE_OK_METHOD
        case .confirmSelect: AMQP_CONFIRM_SELECT_OK_METHOD
        case .basicQos: AMQP_BASIC_QOS_OK_METHOD
        case .exchangeDeclare: AMQP_EXCHANGE_DECLARE_OK_METHOD
        case .exchangeDelete: AMQP_EXCHANGE_DELETE_OK_METHOD
        case .exchangeBind: AMQP_EXCHANGE_BIND_OK_METHOD
        case .exchangeUnbind: AMQP_EXCHANGE_UNBIND_OK_METHOD
        case .queueDeclare: AMQP_QUEUE_DECLARE_OK_METHOD
        case .queueBind: AMQP_QUEUE_BIND_OK_METHOD
        case .queueUnbind: AMQP_QUEUE_UNBIND_OK_METHOD
        case .queuePurge: AMQP_QUEUE_PURGE_OK_METHOD
        case .queueDelete: AMQP_QUEUE_DELETE_OK_METHOD
        case .basicConsume: AMQP_BASIC_CONSUME_OK_METHOD
        case .basicCancel: AMQP_BASIC_CANCEL_OK_METHOD
        // get-ok or get-empty: both are handled by the dispatcher directly.
        case .basicGet: AMQP_BASIC_GET_OK_METHOD
        }
    }

    /// Checks what the broker would reject anyway, so the mistake is reported without losing the channel.
    func validate() throws(AMQPError) {
        func shortString(_ value: String, _ what: String) throws(AMQPError) {
            if value.utf8.count > 255 {
                throw AMQPError(
                    .invalidArgument, message: "\(what) is \(value.utf8.count) bytes; AMQP allows at most 255")
            }
        }
        switch self {
        case .exchangeDeclare(let name, let type, _, _, _, _, _):
            try shortString(name, "exchange name")
            try shortString(type, "exchange type")
        case .exchangeDelete(let name, _): try shortString(name, "exchange name")
        case .exchangeBind(let d, let s, let k, _), .exchangeUnbind(let d, let s, let k, _):
            try shortString(d, "exchange name")
            try shortString(s, "exchange name")
            try shortString(k, "routing key")
        case .queueDeclare(let name, _, _, _, _, _), .queuePurge(let name), .queueDelete(let name, _, _),
            .basicGet(let name, _):
            try shortString(name, "queue name")
        case .queueBind(let q, let e, let k, _), .queueUnbind(let q, let e, let k, _):
            try shortString(q, "queue name")
            try shortString(e, "exchange name")
            try shortString(k, "routing key")
        case .basicConsume(let q, let tag, _, _, _):
            try shortString(q, "queue name")
            try shortString(tag, "consumer tag")
        case .basicCancel(let tag): try shortString(tag, "consumer tag")
        case .channelOpen, .channelClose, .confirmSelect, .basicQos: break
        }
    }

    /// Writes the method to the socket. Returns librabbitmq's status (0 on success).
    func send(on state: amqp_connection_state_t, channel: amqp_channel_t, arena: CArena) -> Int32 {
        func send<T>(_ id: amqp_method_number_t, _ value: T) -> Int32 {
            var method = value
            return withUnsafeMutablePointer(to: &method) { amqp_send_method(state, channel, id, $0) }
        }
        let no: amqp_boolean_t = 0
        func b(_ flag: Bool) -> amqp_boolean_t { flag ? 1 : 0 }
        switch self {
        case .channelOpen:
            return send(AMQP_CHANNEL_OPEN_METHOD, amqp_channel_open_t(out_of_band: .empty))
        case .channelClose:
            return send(
                AMQP_CHANNEL_CLOSE_METHOD,
                amqp_channel_close_t(reply_code: 200, reply_text: arena.bytes("Goodbye"), class_id: 0, method_id: 0))
        case .confirmSelect:
            return send(AMQP_CONFIRM_SELECT_METHOD, amqp_confirm_select_t(nowait: no))
        case .basicQos(let count, let global):
            return send(
                AMQP_BASIC_QOS_METHOD, amqp_basic_qos_t(prefetch_size: 0, prefetch_count: count, global: b(global)))
        case .exchangeDeclare(
            let name, let type, let passive, let durable, let autoDelete, let isInternal, let arguments):
            return send(
                AMQP_EXCHANGE_DECLARE_METHOD,
                amqp_exchange_declare_t(
                    ticket: 0, exchange: arena.bytes(name), type: arena.bytes(type), passive: b(passive),
                    durable: b(durable), auto_delete: b(autoDelete), internal: b(isInternal), nowait: no,
                    arguments: arena.table(arguments)))
        case .exchangeDelete(let name, let ifUnused):
            return send(
                AMQP_EXCHANGE_DELETE_METHOD,
                amqp_exchange_delete_t(ticket: 0, exchange: arena.bytes(name), if_unused: b(ifUnused), nowait: no))
        case .exchangeBind(let destination, let source, let routingKey, let arguments):
            return send(
                AMQP_EXCHANGE_BIND_METHOD,
                amqp_exchange_bind_t(
                    ticket: 0, destination: arena.bytes(destination), source: arena.bytes(source),
                    routing_key: arena.bytes(routingKey), nowait: no, arguments: arena.table(arguments)))
        case .exchangeUnbind(let destination, let source, let routingKey, let arguments):
            return send(
                AMQP_EXCHANGE_UNBIND_METHOD,
                amqp_exchange_unbind_t(
                    ticket: 0, destination: arena.bytes(destination), source: arena.bytes(source),
                    routing_key: arena.bytes(routingKey), nowait: no, arguments: arena.table(arguments)))
        case .queueDeclare(let name, let passive, let durable, let exclusive, let autoDelete, let arguments):
            return send(
                AMQP_QUEUE_DECLARE_METHOD,
                amqp_queue_declare_t(
                    ticket: 0, queue: arena.bytes(name), passive: b(passive), durable: b(durable),
                    exclusive: b(exclusive), auto_delete: b(autoDelete), nowait: no, arguments: arena.table(arguments)))
        case .queueBind(let queue, let exchange, let routingKey, let arguments):
            return send(
                AMQP_QUEUE_BIND_METHOD,
                amqp_queue_bind_t(
                    ticket: 0, queue: arena.bytes(queue), exchange: arena.bytes(exchange),
                    routing_key: arena.bytes(routingKey), nowait: no, arguments: arena.table(arguments)))
        case .queueUnbind(let queue, let exchange, let routingKey, let arguments):
            return send(
                AMQP_QUEUE_UNBIND_METHOD,
                amqp_queue_unbind_t(
                    ticket: 0, queue: arena.bytes(queue), exchange: arena.bytes(exchange),
                    routing_key: arena.bytes(routingKey), arguments: arena.table(arguments)))
        case .queuePurge(let name):
            return send(AMQP_QUEUE_PURGE_METHOD, amqp_queue_purge_t(ticket: 0, queue: arena.bytes(name), nowait: no))
        case .queueDelete(let name, let ifUnused, let ifEmpty):
            return send(
                AMQP_QUEUE_DELETE_METHOD,
                amqp_queue_delete_t(
                    ticket: 0, queue: arena.bytes(name), if_unused: b(ifUnused), if_empty: b(ifEmpty), nowait: no))
        case .basicConsume(let queue, let tag, let noAck, let exclusive, let arguments):
            return send(
                AMQP_BASIC_CONSUME_METHOD,
                amqp_basic_consume_t(
                    ticket: 0, queue: arena.bytes(queue), consumer_tag: arena.bytes(tag), no_local: no,
                    no_ack: b(noAck), exclusive: b(exclusive), nowait: no, arguments: arena.table(arguments)))
        case .basicCancel(let tag):
            return send(AMQP_BASIC_CANCEL_METHOD, amqp_basic_cancel_t(consumer_tag: arena.bytes(tag), nowait: no))
        case .basicGet(let queue, let noAck):
            return send(AMQP_BASIC_GET_METHOD, amqp_basic_get_t(ticket: 0, queue: arena.bytes(queue), no_ack: b(noAck)))
        }
    }
}

/// What a synchronous method's reply carries back to the caller.
enum MethodReply: Sendable {
    case done
    case queueDeclared(name: String, messageCount: UInt32, consumerCount: UInt32)
    case messageCount(UInt32)
    case consumerTag(String)
    case gotMessage(InboundMessage)
    case getEmpty
}

/// A message as the I/O thread assembled it, before the façade attaches its channel.
struct InboundMessage: Sendable {
    var body: [UInt8]
    var properties: AMQPProperties
    var deliveryTag: UInt64
    var redelivered: Bool
    var exchange: String
    var routingKey: String
    /// The consumer tag of a delivery; empty for `basic.get`.
    var consumerTag: String
    /// Messages left in the queue, for `basic.get`.
    var messageCount: UInt32
}
