import Testing
import WarrenAMQP
import WarrenTestSupport

@_spi(WarrenTransport) @testable import Warren

/// Trace context across messages: what the headers carry, what spans a tracer gets, what the logs say.
@Suite("Tracing")
struct TracingTests {
    static let validParent = TraceParents.valid

    /// Values a hostile or broken publisher might put in `traceparent`: each is dropped.
    static let hostileParents = TraceParents.hostile

    @Test(arguments: hostileParents.map(\.0))
    func aHostileTraceparentIsDroppedWithItsTracestate(name: String) throws {
        let value = try #require(Self.hostileParents.first { $0.0 == name }?.1)
        var headers: AMQPTable = ["traceparent": value, "tracestate": .string("vendor=1"), "x-app": .string("kept")]
        #expect(IncomingTrace.sanitize(&headers) == nil)
        #expect(headers["traceparent"] == nil && headers["tracestate"] == nil, "neither is carried to copies")
        #expect(headers["x-app"] == .string("kept"))
    }

    @Test func aValidTraceparentIsKeptAndABadTracestateDroppedAlone() throws {
        var headers: AMQPTable = [
            "traceparent": .string(Self.validParent), "tracestate": .string("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"),
        ]
        let trace = try #require(IncomingTrace.sanitize(&headers))
        #expect(trace.traceID == "4bf92f3577b34da6a3ce929d0e0e4736" && trace.spanID == "00f067aa0ba902b7")
        #expect(trace.traceState == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7" && headers["tracestate"] != nil)

        for badState: AMQPFieldValue in [
            .string("Vendor=1"), .string("a=\u{1}"), .string(String(repeating: "a=b,", count: 200)), .int32(1),
        ] {
            var headers: AMQPTable = ["traceparent": .string(Self.validParent), "tracestate": badState]
            let trace = try #require(IncomingTrace.sanitize(&headers), "the parent stands on its own")
            #expect(trace.traceState == nil && headers["tracestate"] == nil && headers["traceparent"] != nil)
        }
        var none: AMQPTable = ["tracestate": .string("vendor=1")]
        #expect(IncomingTrace.sanitize(&none) == nil && none.isEmpty, "a tracestate without its parent means nothing")
    }

    @Test func destinationNamesFollowTheMessagingConventions() {
        #expect(MessagingSpan.destination(exchange: "", routingKey: "") == "amq.default")
        #expect(MessagingSpan.destination(exchange: "", routingKey: "emails") == "emails")
        #expect(MessagingSpan.destination(exchange: "orders", routingKey: "") == "orders")
        #expect(MessagingSpan.destination(exchange: "orders", routingKey: "created") == "orders:created")
        #expect(MessagingSpan.destination(exchange: "", routingKey: "emails", queue: "emails") == "emails")
        #expect(
            MessagingSpan.destination(exchange: "orders", routingKey: "created", queue: "billing")
                == "orders:created:billing")
    }
}
