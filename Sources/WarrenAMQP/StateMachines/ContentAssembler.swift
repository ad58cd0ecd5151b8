/// Reassembles message content on one channel: a `basic.deliver`, `basic.return` or `basic.get-ok` method frame,
/// then a content header frame with the properties and body size, then body frames until the size is reached.
///
/// Pure value type; the I/O thread feeds it frames in wire order.
struct ContentAssembler<Method> {
    enum Outcome {
        case incomplete
        case complete(Method, AMQPProperties, [UInt8])
        /// Frames arrived in an order the protocol forbids; the connection must be closed.
        case protocolViolation(String)
    }

    private enum State {
        case idle
        case awaitingHeader(Method)
        case awaitingBody(Method, AMQPProperties, expected: Int, body: [UInt8])
    }

    private var state: State = .idle

    init() {}

    var isIdle: Bool {
        if case .idle = state { return true }
        return false
    }

    mutating func begin(_ method: Method) -> Outcome {
        guard case .idle = state else {
            return .protocolViolation("a content method arrived while content was incomplete")
        }
        state = .awaitingHeader(method)
        return .incomplete
    }

    mutating func header(bodySize: UInt64, properties: AMQPProperties) -> Outcome {
        guard case .awaitingHeader(let method) = state else {
            return .protocolViolation("a content header arrived without a content method")
        }
        guard bodySize <= UInt64(Int.max) else {
            return .protocolViolation("content body size \(bodySize) is too large")
        }
        if bodySize == 0 {
            state = .idle
            return .complete(method, properties, [])
        }
        var body: [UInt8] = []
        // Reserve what was announced, but do not trust a huge announcement before the bytes arrive.
        body.reserveCapacity(Int(min(bodySize, 16 * 1024 * 1024)))
        state = .awaitingBody(method, properties, expected: Int(bodySize), body: body)
        return .incomplete
    }

    mutating func body(_ fragment: UnsafeRawBufferPointer) -> Outcome {
        guard case .awaitingBody(let method, let properties, let expected, var body) = state else {
            return .protocolViolation("a content body frame arrived without a content header")
        }
        state = .idle  // drop the state's reference so `body` is uniquely owned while appending
        body.append(contentsOf: fragment)
        if body.count > expected { return .protocolViolation("content body longer than its header announced") }
        if body.count == expected { return .complete(method, properties, body) }
        state = .awaitingBody(method, properties, expected: expected, body: body)
        return .incomplete
    }

    /// Forgets partial content (the channel closed).
    mutating func reset() { state = .idle }
}
