//! Profile images: Clerk's `image_url`, set from `<UserProfile/>` (`POST /v1/me/profile_image`)
//! or the Backend API (`POST /v1/users/{id}/profile_image`), and served at
//! `{public URL}clerk/images/{id}` to anyone with the URL, as Clerk's image host serves them.
//!
//! An upload is never kept as it came. It is decoded (PNG, JPEG, GIF or WebP, read from its
//! bytes, whatever it claims to be) under limits on its size, its dimensions and the memory
//! decoding may take, turned upright by its EXIF orientation, shrunk to fit
//! [`SIDE`] × [`SIDE`], and encoded again (PNG when it has transparency, JPEG otherwise), so no
//! metadata of the photo (its place, its camera) and no bytes a browser could read as anything
//! but an image survive. Decoding is CPU work: it runs on the blocking pool, and an instance
//! takes [`UPLOADS_AT_ONCE`] uploads at a time (an [`ImageSlot`] is held from before the body
//! is read until the image is stored); the others are told to retry.
//!
//! The image's id is kept in the identity's admin metadata (`clerk.image`), the bytes in the
//! store beside the identity, and both change in one write with the `user.updated` event.

use crate::audit::By;
use crate::error::{Error, Result};
use crate::identity::Identity;
use crate::service::Core;
use crate::store::StoreError;
use crate::ui::UiText;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};
use serde_json::{json, Value};
use std::io::Cursor;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// The largest upload taken, as Clerk's (10 MB).
pub const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;
/// The largest width or height an upload may have before it is shrunk.
const MAX_SIDE_IN: u32 = 8192;
/// The most pixels an upload may have (a 24-megapixel photo, 6000 × 4000): with the output
/// buffer capped below, this bounds what a decoder allocates inside (a progressive JPEG keeps
/// its coefficients, two bytes a sample).
const MAX_PIXELS: u64 = 24_000_000;
/// What the decoded picture may take: checked against the header before decoding, since
/// `Limits::max_alloc` is not honoured by every decoder.
const MAX_DECODE_BYTES: u64 = 128 * 1024 * 1024;
/// Uploads an instance works on at once (read, decoded, stored); more are answered "busy"
/// before their bodies are read.
const UPLOADS_AT_ONCE: usize = 2;
/// The side of the square a stored image fits in.
pub const SIDE: u32 = 512;
const JPEG_QUALITY: u8 = 85;

/// A profile image as stored and served.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileImage {
    /// `img_` and 32 hex digits; new for every upload, so a URL never shows another picture.
    pub id: String,
    pub identity_id: Uuid,
    /// `image/png` or `image/jpeg`.
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub created_at: OffsetDateTime,
}

/// Why an upload is not an image this server takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRefusal {
    Empty,
    TooLarge,
    /// Not PNG, JPEG, GIF or WebP (SVG included: it can carry script).
    UnknownFormat,
    /// Wider or taller than [`MAX_SIDE_IN`], more than [`MAX_PIXELS`], or more than decoding
    /// may allocate.
    TooManyPixels,
    /// Cut short or corrupt.
    Undecodable,
}

impl ImageRefusal {
    /// The message for the `file` field.
    pub fn text(&self) -> UiText {
        let text = match self {
            ImageRefusal::Empty => "The file is empty.".to_string(),
            ImageRefusal::TooLarge => format!(
                "The image is larger than {} MB.",
                MAX_UPLOAD_BYTES / (1024 * 1024)
            ),
            ImageRefusal::UnknownFormat => {
                "The file is not a PNG, JPEG, GIF or WebP image.".to_string()
            }
            ImageRefusal::TooManyPixels => format!(
                "The image has more than {} megapixels (or sides over {MAX_SIDE_IN} pixels).",
                MAX_PIXELS / 1_000_000
            ),
            ImageRefusal::Undecodable => "The image could not be read.".to_string(),
        };
        UiText::error(4000001, &text, None)
    }
}

/// The upload as it will be stored: `(bytes, content type)`.
pub fn normalise(upload: &[u8]) -> std::result::Result<(Vec<u8>, &'static str), ImageRefusal> {
    if upload.is_empty() {
        return Err(ImageRefusal::Empty);
    }
    if upload.len() > MAX_UPLOAD_BYTES {
        return Err(ImageRefusal::TooLarge);
    }
    let reader = ImageReader::new(Cursor::new(upload))
        .with_guessed_format()
        .map_err(|_| ImageRefusal::Undecodable)?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg | ImageFormat::Gif | ImageFormat::WebP) => {}
        _ => return Err(ImageRefusal::UnknownFormat),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_IN);
    limits.max_image_height = Some(MAX_SIDE_IN);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    let mut reader = reader;
    reader.limits(limits);
    let refused = |e: image::ImageError| match e {
        image::ImageError::Limits(_) => ImageRefusal::TooManyPixels,
        _ => ImageRefusal::Undecodable,
    };
    let mut decoder = reader.into_decoder().map_err(refused)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS || decoder.total_bytes() > MAX_DECODE_BYTES
    {
        return Err(ImageRefusal::TooManyPixels);
    }
    let orientation = decoder.orientation().map_err(refused)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(refused)?;
    // Shrunk first, so turning it copies the small picture (the bound is a square).
    if img.width() > SIDE || img.height() > SIDE {
        img = img.thumbnail(SIDE, SIDE);
    }
    img.apply_orientation(orientation);
    let mut out = Cursor::new(Vec::new());
    let content_type = if img.color().has_alpha() {
        DynamicImage::ImageRgba8(img.to_rgba8())
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|_| ImageRefusal::Undecodable)?;
        "image/png"
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY);
        DynamicImage::ImageRgb8(img.to_rgb8())
            .write_with_encoder(encoder)
            .map_err(|_| ImageRefusal::Undecodable)?;
        "image/jpeg"
    };
    Ok((out.into_inner(), content_type))
}

/// The uploads an instance works on at once.
#[derive(Clone)]
pub(crate) struct ImageWork(Arc<tokio::sync::Semaphore>);

impl Default for ImageWork {
    fn default() -> Self {
        ImageWork(Arc::new(tokio::sync::Semaphore::new(UPLOADS_AT_ONCE)))
    }
}

/// A place among the uploads being worked on, taken before an upload's body is read.
pub struct ImageSlot {
    _held: tokio::sync::OwnedSemaphorePermit,
}

/// The id of the identity's profile image, if it has one.
pub fn image_id(identity: &Identity) -> Option<&str> {
    identity
        .metadata_admin
        .as_ref()?
        .pointer("/clerk/image")?
        .as_str()
}

/// `identity` with its admin metadata naming `id` as its image (or none).
fn with_image(identity: &Identity, id: Option<&str>) -> Identity {
    let mut changed = identity.clone();
    let meta = changed.metadata_admin.get_or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    if let Some(m) = meta.as_object_mut() {
        let clerk = m.entry("clerk").or_insert_with(|| json!({}));
        if !clerk.is_object() {
            *clerk = json!({});
        }
        if let Some(c) = clerk.as_object_mut() {
            match id {
                Some(id) => {
                    c.insert("image".into(), Value::from(id));
                }
                None => {
                    c.remove("image");
                }
            }
        }
    }
    changed
}

/// What an upload ends in.
pub enum ImageChange {
    Saved {
        identity: Box<Identity>,
        image: Option<ProfileImage>,
    },
    Refused(ImageRefusal),
}

impl Core {
    /// A place for an upload, or [`Error::Busy`] when the instance has as many as it takes.
    pub fn image_slot(&self) -> Result<ImageSlot> {
        self.image_work
            .0
            .clone()
            .try_acquire_owned()
            .map(|held| ImageSlot { _held: held })
            .map_err(|_| Error::Busy { retry_after: 1 })
    }

    /// Sets `upload` (read in its slot) as `identity`'s profile image, or removes any it has
    /// (`None`; the stored bytes go whatever its metadata says), with the `user.updated` event.
    pub async fn set_profile_image(
        &self,
        identity: &Identity,
        upload: Option<(ImageSlot, Vec<u8>)>,
        by: &By,
        now: OffsetDateTime,
    ) -> Result<ImageChange> {
        let image = match upload {
            Some((slot, upload)) => {
                let done = tokio::task::spawn_blocking(move || {
                    let _slot = slot;
                    normalise(&upload)
                })
                .await
                .map_err(|e| Error::Internal(format!("decoding an image failed: {e}")))?;
                let (bytes, content_type) = match done {
                    Ok(image) => image,
                    Err(refusal) => return Ok(ImageChange::Refused(refusal)),
                };
                Some(ProfileImage {
                    id: format!("img_{}", Uuid::new_v4().simple()),
                    identity_id: identity.id,
                    content_type: content_type.into(),
                    bytes,
                    created_at: now,
                })
            }
            None => None,
        };
        let mut changed = with_image(identity, image.as_ref().map(|i| i.id.as_str()));
        changed.updated_at = now;
        let fx = crate::admin::identity_change_effects(identity, &changed, by, now);
        self.store
            .update_identity_with_image(&mut changed, image.as_ref(), &fx)
            .await
            .map_err(|e| match e {
                StoreError::NotFound => Error::not_found("Unable to locate the resource"),
                other => other.into(),
            })?;
        Ok(ImageChange::Saved {
            identity: Box::new(changed),
            image,
        })
    }

    /// The profile image `id`, to serve: stored, and the one its identity names.
    pub async fn profile_image(&self, id: &str) -> Result<Option<ProfileImage>> {
        // Ids are ours: anything else is nobody's, without asking the store.
        let ours = id.len() == 36
            && id.starts_with("img_")
            && id.bytes().skip(4).all(|b| b.is_ascii_hexdigit());
        if !ours {
            return Ok(None);
        }
        let Some(image) = self.store.profile_image(id).await? else {
            return Ok(None);
        };
        // Only while the identity names it: an admin write that replaced the metadata from an
        // older read (or dropped `clerk.image`) leaves no picture served that no User shows.
        let named = self
            .store
            .get_identity(image.identity_id)
            .await?
            .is_some_and(|i| image_id(&i) == Some(id));
        Ok(named.then_some(image))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// A PNG of a signature, an IHDR chunk saying `w` × `h` and a few bytes of nothing.
    fn png_header(w: u32, h: u32, depth: u8, colour: u8) -> Vec<u8> {
        fn crc(bytes: &[u8]) -> u32 {
            let mut c = 0xFFFF_FFFFu32;
            for &b in bytes {
                c ^= u32::from(b);
                for _ in 0..8 {
                    c = if c & 1 == 1 {
                        0xEDB8_8320 ^ (c >> 1)
                    } else {
                        c >> 1
                    };
                }
            }
            !c
        }
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[depth, colour, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0d".to_vec();
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc(&ihdr).to_be_bytes());
        png.extend_from_slice(&[0, 0, 0, 4, b'I', b'D', b'A', b'T', 1, 2, 3, 4, 0, 0, 0, 0]);
        png
    }

    #[test]
    fn uploads_are_shrunk_and_encoded_again() {
        let photo = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            1600,
            800,
            image::Rgb([200, 30, 30]),
        ));
        let (bytes, kind) = normalise(&encoded(photo, ImageFormat::Png)).unwrap();
        assert_eq!(kind, "image/jpeg");
        let back = image::load_from_memory(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (SIDE, SIDE / 2));

        let icon = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            64,
            64,
            image::Rgba([0, 0, 0, 10]),
        ));
        let (bytes, kind) = normalise(&encoded(icon, ImageFormat::Gif)).unwrap();
        assert_eq!(kind, "image/png");
        let back = image::load_from_memory(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (64, 64));
        assert!(back.color().has_alpha());
    }

    #[test]
    fn a_photo_is_turned_upright_and_loses_its_exif() {
        let jpeg = encoded(
            DynamicImage::ImageRgb8(image::RgbImage::new(40, 20)),
            ImageFormat::Jpeg,
        );
        // An APP1 segment after the start marker: EXIF (little-endian TIFF) with one entry,
        // Orientation = 6 (the camera was turned a quarter clockwise).
        let mut tiff = b"Exif\0\0II\x2a\0\x08\0\0\0\x01\0".to_vec();
        tiff.extend_from_slice(&[0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0, 0]);
        let len = u16::try_from(tiff.len() + 2).unwrap().to_be_bytes();
        let mut photo = jpeg[..2].to_vec();
        photo.extend_from_slice(&[0xFF, 0xE1, len[0], len[1]]);
        photo.extend_from_slice(&tiff);
        photo.extend_from_slice(&jpeg[2..]);
        let (bytes, kind) = normalise(&photo).unwrap();
        assert_eq!(kind, "image/jpeg");
        let back = image::load_from_memory(&bytes).unwrap();
        assert_eq!((back.width(), back.height()), (20, 40));
        assert!(!bytes.windows(4).any(|w| w == b"Exif"));
    }

    #[test]
    fn what_is_not_a_small_enough_image_is_refused() {
        assert_eq!(normalise(b""), Err(ImageRefusal::Empty));
        let svg = br#"<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>"#;
        assert_eq!(normalise(svg), Err(ImageRefusal::UnknownFormat));
        assert_eq!(
            normalise(&vec![0u8; MAX_UPLOAD_BYTES + 1]),
            Err(ImageRefusal::TooLarge)
        );
        let png = encoded(
            DynamicImage::ImageRgb8(image::RgbImage::new(32, 32)),
            ImageFormat::Png,
        );
        assert_eq!(
            normalise(&png[..png.len() / 2]),
            Err(ImageRefusal::Undecodable)
        );
        // A small file claiming enormous dimensions (a decompression bomb) is refused from
        // its header, before anything is allocated for it.
        let huge = encoded(
            DynamicImage::ImageLuma8(image::GrayImage::new(MAX_SIDE_IN + 1, 1)),
            ImageFormat::Png,
        );
        assert!(huge.len() < 64 * 1024);
        assert_eq!(normalise(&huge), Err(ImageRefusal::TooManyPixels));
        // Within the sides but past the pixels, and within the pixels but past the memory
        // (16-bit RGBA): refused from the header, whatever follows it.
        for (w, h, depth, colour) in [(8000, 3100, 8, 0), (4500, 4000, 16, 6)] {
            assert_eq!(
                normalise(&png_header(w, h, depth, colour)),
                Err(ImageRefusal::TooManyPixels)
            );
        }
    }
}
