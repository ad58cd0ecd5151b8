import Foundation
import HTTPTypes
import Hummingbird

/// How the dashboard answers in JSON: keys sorted, a newline at the end, never cached. ``DashboardRequestContext``
/// encodes every `ResponseEncodable` answer with it.
public struct DashboardJSONEncoder: ResponseEncoder {
    public init() {}

    public func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response
    {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var body = try encoder.encode(value)
        body.append(UInt8(ascii: "\n"))
        return Response(
            status: .ok, headers: [.contentType: "application/json", .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// A value answered in JSON by the request context's encoder: for what is not `ResponseEncodable` itself (a
/// dictionary such as `["dead_letters": …]`, a type of another module).
struct JSONAnswer<Value: Encodable>: ResponseEncodable {
    let value: Value

    init(_ value: Value) {
        self.value = value
    }

    func encode(to encoder: any Encoder) throws {
        try value.encode(to: encoder)
    }
}

/// `{"error": code, "message": message}`: what every refused or failed API request answers, with its status.
struct APIError: ResponseEncodable {
    var error: String
    var message: String

    init(_ error: String, _ message: String) {
        self.error = error
        self.message = message
    }
}

extension ResponseEncodable {
    /// This value, encoded by the context's encoder, with `status` and `headers`, and never cached whatever that
    /// encoder says (``LedgerAPI`` may serve under a host's own context: dead letters' bodies must not land in a cache).
    func response(
        _ status: HTTPResponse.Status, headers: HTTPFields = [:], for request: Request, context: some RequestContext
    ) throws -> Response {
        var response = try response(from: request, context: context)
        response.status = status
        for field in headers { response.headers[field.name] = field.value }
        response.headers[.cacheControl] = "no-store"
        return response
    }
}
