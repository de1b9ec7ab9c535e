import Foundation
import Imaging
import Torch

/// RADIO-CLIP: a C-RADIOv3 vision backbone with a teacher's text adaptor (TAO's CRADIO).
public enum RADIOFamily: CLIPFamily {
  public static let types = ["c-radio_v3-b", "c-radio_v3-l", "c-radio_v3-h", "c-radio_v3-g"]
  public static var readsAdaptorName: Bool { true }

  /// RADIO types only: a directory of another format never stands in for one.
  public static func claims(type: String, pretrainedDir: String?) -> Bool { types.contains(type) }

  public static func load(_ o: ModelLoadOptions) throws -> CLIPBundle {
    throw ModelRegistryError.notImplemented(type: o.type, reason: "the RADIO-CLIP family is not supported yet (model.pretrained_dir cannot stand in for it)")
  }
}
