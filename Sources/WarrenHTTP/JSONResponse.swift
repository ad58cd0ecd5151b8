import Foundation
import Hummingbird

/// The JSON answers of Warren's HTTP endpoints (health here, the ledger's API in WarrenDashboard): key-sorted, ending
/// in a newline, never cached.
package enum JSONResponse {
    package static func make(_ value: some Encodable, status: HTTPResponse.Status = .ok, headers: HTTPFields = [:])
        throws -> Response
    {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var body = try encoder.encode(value)
        body.append(UInt8(ascii: "\n"))
        var fields = headers
        fields[.contentType] = "application/json"
        fields[.cacheControl] = "no-store"
        return Response(status: status, headers: fields, body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    /// `{"error": code, "message": message}`.
    package static func error(
        _ status: HTTPResponse.Status, _ code: String, _ message: String, headers: HTTPFields = [:]
    ) throws -> Response {
        try make(["error": code, "message": message], status: status, headers: headers)
    }
}
