import CHDF5
import CPNG
import CTurboJPEG
import CWebP
import Testing

/// The image codecs and HDF5 come from Debian's C libraries; these link and report versions.
@Suite struct SystemLibraries {
  @Test func codecsAndHDF5Link() throws {
    let tj = tjInitDecompress()
    #expect(tj != nil)
    tjDestroy(tj)
    #expect(png_access_version_number() >= 10600)
    #expect(WebPGetDecoderVersion() >= 0x000600)
    var major: UInt32 = 0, minor: UInt32 = 0, release: UInt32 = 0
    #expect(H5get_libversion(&major, &minor, &release) >= 0)
    #expect(major == 1 && minor >= 10)
  }
}
