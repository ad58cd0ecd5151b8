import CRabbitMQ
import Foundation

/// Frames in: what the broker sends, read on the I/O thread and dispatched to channels, consumers and waiters.
extension ConnectionCore {
    /// Reads and dispatches the frames that are available without blocking, at most `limit`; returns whether it read
    /// all of them (librabbitmq holds no complete frame and the socket nothing more). Also lets librabbitmq send a
    /// heartbeat when one is due and notice missed ones.
    func readFrames(limit: Int) -> Bool {
        guard let connection else { return true }
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        var frame = amqp_frame_t()
        var count = 0
        var drained = false
        while count < limit && running {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue {
                drained = true
                break
            }
            if status != AMQP_STATUS_OK.rawValue {
                let code: AMQPError.Code = .connectionLost
                let why =
                    status == AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue
                    ? "the broker missed its heartbeats" : "reading from the broker failed: \(statusText(status))"
                connectionFailed(AMQPError(code, message: why))
                return true
            }
            count += 1
            dispatch(frame)
        }
        if running { amqp_maybe_release_buffers(connection) }
        for sink in sinksToWake { sink.wake() }
        sinksToWake.removeAll(keepingCapacity: true)
        return drained
    }

    func dispatch(_ frame: amqp_frame_t) {
        let channelID = frame.channel
        switch Int32(frame.frame_type) {
        case AMQP_FRAME_METHOD:
            if channelID == 0 {
                handleConnectionMethod(frame.payload.method)
            } else if let channel = channels[channelID] {
                handleChannelMethod(frame.payload.method, on: channel)
            }
        case AMQP_FRAME_HEADER:
            guard let channel = channels[channelID] else { return }
            let properties =
                frame.payload.properties.decoded
                .map { AMQPProperties($0.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee, names: names) }
                ?? AMQPProperties()
            contentOutcome(
                channel.assembler.header(bodySize: frame.payload.properties.body_size, properties: properties),
                on: channel)
        case AMQP_FRAME_BODY:
            guard let channel = channels[channelID] else { return }
            let fragment = frame.payload.body_fragment
            let outcome = channel.assembler.body(UnsafeRawBufferPointer(start: fragment.bytes, count: fragment.len))
            contentOutcome(outcome, on: channel)
        default:
            break  // heartbeats are handled inside librabbitmq
        }
    }

    func handleConnectionMethod(_ method: amqp_method_t) {
        switch method.id {
        case AMQP_CONNECTION_CLOSE_METHOD:
            let close = method.decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            var ok = amqp_connection_close_ok_t(dummy: 0)
            _ = amqp_send_method(connection, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok)
            connectionFailed(
                AMQPError(
                    .connectionClosed, replyCode: close.reply_code, replyText: close.reply_text.string,
                    message: "the broker closed the connection"))
        case AMQP_CONNECTION_BLOCKED_METHOD:
            let frame = method.decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee
            let reason = frame.reason.string
            logger.warning("broker blocked the connection; publishing paused", metadata: ["reason": "\(reason)"])
            blocked = true
            emit(.blocked(reason: reason)) { $0.isBlocked = true }
        case AMQP_CONNECTION_UNBLOCKED_METHOD:
            logger.info(
                "broker unblocked the connection; publishing resumed",
                metadata: ["paused_publishes": .stringConvertible(pausedPublishes.count)])
            blocked = false
            emit(.unblocked) { $0.isBlocked = false }
            let paused = pausedPublishes
            pausedPublishes.removeAll()
            for (target, message, waiter) in paused where running {
                guard let channel = usableChannel(target, failing: { waiter.complete(.failure($0)) }) else { continue }
                publish(message, on: channel, waiter: waiter)
            }
        default:
            logger.debug("ignored connection method", metadata: ["method": "\(method.id)"])
        }
    }

    func handleChannelMethod(_ method: amqp_method_t, on channel: ChannelBookkeeping) {
        let decoded = method.decoded
        switch method.id {
        case AMQP_BASIC_DELIVER_METHOD:
            let d = decoded!.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            contentOutcome(
                channel.assembler.begin(
                    .deliver(
                        consumerTag: names.string(d.consumer_tag), deliveryTag: d.delivery_tag,
                        redelivered: d.redelivered != 0,
                        exchange: names.string(d.exchange), routingKey: names.string(d.routing_key))), on: channel)
        case AMQP_BASIC_ACK_METHOD:
            let ack = decoded!.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            confirm(on: channel, deliveryTag: ack.delivery_tag, multiple: ack.multiple != 0, nacked: false)
        case AMQP_BASIC_NACK_METHOD:
            let nack = decoded!.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            confirm(on: channel, deliveryTag: nack.delivery_tag, multiple: nack.multiple != 0, nacked: true)
        case AMQP_BASIC_RETURN_METHOD:
            let r = decoded!.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            contentOutcome(
                channel.assembler.begin(
                    .returned(
                        replyCode: r.reply_code, replyText: r.reply_text.string,
                        exchange: r.exchange.string, routingKey: r.routing_key.string)), on: channel)
        case AMQP_BASIC_GET_OK_METHOD:
            let g = decoded!.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
            contentOutcome(
                channel.assembler.begin(
                    .getOk(
                        deliveryTag: g.delivery_tag, redelivered: g.redelivered != 0, exchange: g.exchange.string,
                        routingKey: g.routing_key.string, messageCount: g.message_count)), on: channel)
        case AMQP_BASIC_GET_EMPTY_METHOD:
            completeHead(of: channel, with: .success(.getEmpty))
        case AMQP_BASIC_CANCEL_METHOD:
            let cancel = decoded!.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            let tag = cancel.consumer_tag.string
            if cancel.nowait == 0 {
                let arena = CArena()
                var ok = amqp_basic_cancel_ok_t(consumer_tag: arena.bytes(tag))
                _ = amqp_send_method(connection, channel.id, AMQP_BASIC_CANCEL_OK_METHOD, &ok)
            }
            logger.warning(
                "broker cancelled a consumer", metadata: ["amqp.consumer": "\(tag)", "amqp.channel": "\(channel.id)"])
            channel.consumers.removeValue(forKey: tag)?.finish(
                AMQPError(
                    .consumerCancelled,
                    message: "the broker cancelled consumer \(tag) (its queue was deleted or became unavailable)"))
        case AMQP_CHANNEL_CLOSE_METHOD:
            let close = decoded!.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            var ok = amqp_channel_close_ok_t(dummy: 0)
            _ = amqp_send_method(connection, channel.id, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok)
            let error = AMQPError(
                .channelClosed, replyCode: close.reply_code, replyText: close.reply_text.string,
                message: "the broker closed channel \(channel.id)")
            logger.debug("broker closed a channel", metadata: ["amqp.channel": "\(channel.id)", "error": "\(error)"])
            closeChannel(channel, error: error, normal: false)
        case AMQP_CHANNEL_FLOW_METHOD:
            let flow = decoded!.assumingMemoryBound(to: amqp_channel_flow_t.self).pointee
            var ok = amqp_channel_flow_ok_t(active: flow.active)
            _ = amqp_send_method(connection, channel.id, AMQP_CHANNEL_FLOW_OK_METHOD, &ok)
        default:
            guard let head = channel.pendingMethods.first, head.method.expectedReply == method.id else {
                connectionFailed(
                    AMQPError(.protocolError, message: "unexpected method \(method.id) on channel \(channel.id)"))
                return
            }
            let reply: MethodReply
            switch method.id {
            case AMQP_QUEUE_DECLARE_OK_METHOD:
                let ok = decoded!.assumingMemoryBound(to: amqp_queue_declare_ok_t.self).pointee
                reply = .queueDeclared(
                    name: ok.queue.string, messageCount: ok.message_count, consumerCount: ok.consumer_count)
            case AMQP_QUEUE_PURGE_OK_METHOD:
                reply = .messageCount(
                    decoded!.assumingMemoryBound(to: amqp_queue_purge_ok_t.self).pointee.message_count)
            case AMQP_QUEUE_DELETE_OK_METHOD:
                reply = .messageCount(
                    decoded!.assumingMemoryBound(to: amqp_queue_delete_ok_t.self).pointee.message_count)
            case AMQP_BASIC_CONSUME_OK_METHOD:
                reply = .consumerTag(
                    decoded!.assumingMemoryBound(to: amqp_basic_consume_ok_t.self).pointee.consumer_tag.string)
            case AMQP_BASIC_CANCEL_OK_METHOD:
                let tag = decoded!.assumingMemoryBound(to: amqp_basic_cancel_ok_t.self).pointee.consumer_tag.string
                channel.consumers.removeValue(forKey: tag)?.finish(nil)
                reply = .done
            case AMQP_CONFIRM_SELECT_OK_METHOD:
                if channel.confirms == nil { channel.confirms = ConfirmTracker() }
                if case .confirmSelect(let timeout) = head.method { channel.confirmTimeout = timeout }
                reply = .done
            case AMQP_CHANNEL_CLOSE_OK_METHOD:
                // Marked closed before `close()` returns, so its caller never sees the channel open afterwards.
                let error = AMQPError(.channelClosed, message: "channel \(channel.id) was closed by the client")
                channel.handle.markClosed(error)
                completeHead(of: channel, with: .success(.done))
                closeChannel(channel, error: error, normal: true)
                return
            default:
                reply = .done
            }
            completeHead(of: channel, with: .success(reply))
        }
    }

    func contentOutcome(_ outcome: ContentAssembler<ContentMethod>.Outcome, on channel: ChannelBookkeeping) {
        switch outcome {
        case .incomplete:
            return
        case .protocolViolation(let why):
            connectionFailed(AMQPError(.protocolError, message: why))
        case .complete(let method, let properties, let body):
            switch method {
            case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
                let message = InboundMessage(
                    body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                    exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, messageCount: 0)
                if let sink = channel.consumers[consumerTag] {
                    pacing.deliveryRead(needsAck: sink.acknowledges, now: .now)
                    if sink.acknowledges { channel.lastDeliveryTag = deliveryTag }
                    if sink.yield(message) { sinksToWake.append(sink) }
                }
            case .getOk(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount):
                let message = InboundMessage(
                    body: body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                    exchange: exchange, routingKey: routingKey, consumerTag: "", messageCount: messageCount)
                completeHead(of: channel, with: .success(.gotMessage(message)))
            case .returned(let replyCode, let replyText, let exchange, let routingKey):
                let info = ConfirmTracker<PublishRecord>.ReturnedInfo(replyCode: replyCode, replyText: replyText)
                let matched =
                    channel.confirms?.markReturned(info) { record in
                        record.mandatory && record.exchange == exchange && record.routingKey == routingKey
                            && record.body == body
                    } ?? false
                if !matched {
                    logger.warning(
                        "a mandatory message was returned as unroutable",
                        metadata: [
                            "amqp.exchange": "\(exchange)", "amqp.routing_key": "\(routingKey)",
                            "reply": "\(replyCode) \(replyText)",
                        ])
                }
            }
        }
    }

    func confirm(on channel: ChannelBookkeeping, deliveryTag: UInt64, multiple: Bool, nacked: Bool) {
        guard let settled = channel.confirms?.settle(deliveryTag: deliveryTag, multiple: multiple) else { return }
        for entry in settled {
            if let returned = entry.returned {
                entry.token.waiter.complete(
                    .failure(
                        AMQPError(
                            .unroutable, replyCode: returned.replyCode, replyText: returned.replyText,
                            message:
                                "no queue is bound for routing key '\(entry.token.routingKey)' on exchange '\(entry.token.exchange)'"
                        )))
            } else if nacked {
                entry.token.waiter.complete(
                    .failure(AMQPError(.nacked, message: "the broker nacked the publish (sequence \(entry.sequence))")))
            } else {
                entry.token.waiter.complete(.success(()))
            }
        }
    }
}
