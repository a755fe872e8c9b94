//! One column chunk's pages as they are written: compressed, framed by page headers, counted in
//! the chunk's sizes and its offset index.

use datafusion::parquet::basic::{Compression, Encoding};
use datafusion::parquet::column::page::{CompressedPage, Page, PageWriter};
use datafusion::parquet::column::writer::ColumnCloseResult;
use datafusion::parquet::errors::{ParquetError, Result};
use datafusion::parquet::file::metadata::{ColumnChunkMetaData, OffsetIndexBuilder};
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::statistics::Statistics;
use datafusion::parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use datafusion::parquet::schema::types::ColumnDescPtr;

/// The page compression of one column chunk: one ZSTD context for all its pages.
enum Codec {
    Uncompressed,
    Zstd(zstd::bulk::Compressor<'static>),
}

impl Codec {
    fn new(compression: Compression) -> Result<Codec> {
        let external = |e: std::io::Error| ParquetError::External(Box::new(e));
        match compression {
            Compression::UNCOMPRESSED => Ok(Codec::Uncompressed),
            Compression::ZSTD(level) => Ok(Codec::Zstd(
                zstd::bulk::Compressor::new(level.compression_level()).map_err(external)?,
            )),
            other => Err(ParquetError::NYI(format!(
                "column chunks compressed with {other}"
            ))),
        }
    }

    fn compress(&mut self, data: &[u8]) -> Result<bytes::Bytes> {
        match self {
            Codec::Uncompressed => Ok(bytes::Bytes::copy_from_slice(data)),
            Codec::Zstd(compressor) => compressor
                .compress(data)
                .map(bytes::Bytes::from)
                .map_err(|e| ParquetError::External(Box::new(e))),
        }
    }
}

/// Whether [`ChunkPages`] compresses pages as `compression` asks.
pub(super) fn compresses(compression: Compression) -> bool {
    matches!(
        compression,
        Compression::UNCOMPRESSED | Compression::ZSTD(_)
    )
}

/// The pages written so far of one column chunk.
pub(super) struct ChunkPages {
    sink: TrackedWrite<Vec<u8>>,
    codec: Codec,
    compression: Compression,
    offsets: OffsetIndexBuilder,
    compressed_size: i64,
    uncompressed_size: i64,
    dictionary_page_offset: Option<i64>,
    data_page_offset: Option<i64>,
    rows: usize,
    encodings: Vec<Encoding>,
}

impl ChunkPages {
    /// An empty chunk of the column `descr`, compressed as the properties ask.
    pub(super) fn new(descr: &ColumnDescPtr, properties: &WriterProperties) -> Result<ChunkPages> {
        let compression = properties.compression(descr.path());
        Ok(ChunkPages {
            sink: TrackedWrite::new(Vec::new()),
            codec: Codec::new(compression)?,
            compression,
            offsets: OffsetIndexBuilder::new(),
            compressed_size: 0,
            uncompressed_size: 0,
            dictionary_page_offset: None,
            data_page_offset: None,
            rows: 0,
            // Definition levels, RLE-encoded, whether or not a column has any.
            encodings: vec![Encoding::RLE],
        })
    }

    /// Writes the dictionary page: `values` values, PLAIN-encoded in `plain`. It must come first.
    pub(super) fn dictionary_page(&mut self, plain: &[u8], values: usize) -> Result<()> {
        let page = Page::DictionaryPage {
            buf: self.codec.compress(plain)?,
            num_values: values as u32,
            encoding: Encoding::PLAIN,
            is_sorted: false,
        };
        let offset = self.write(CompressedPage::new(page, plain.len()))?.0;
        self.uses(Encoding::PLAIN);
        self.dictionary_page_offset = Some(offset);
        Ok(())
    }

    /// Writes a version 1 data page of `rows` rows, one value each: `encoded` holds its levels
    /// and its values in `encoding`.
    pub(super) fn data_page(
        &mut self,
        encoded: &[u8],
        rows: usize,
        encoding: Encoding,
    ) -> Result<()> {
        let page = Page::DataPage {
            buf: self.codec.compress(encoded)?,
            num_values: rows as u32,
            encoding,
            def_level_encoding: Encoding::RLE,
            rep_level_encoding: Encoding::RLE,
            statistics: None,
        };
        let (offset, size) = self.write(CompressedPage::new(page, encoded.len()))?;
        self.data_page_offset.get_or_insert(offset);
        self.uses(encoding);
        self.offsets.append_offset_and_size(offset, size);
        self.offsets.append_row_count(rows as i64);
        self.rows += rows;
        Ok(())
    }

    fn uses(&mut self, encoding: Encoding) {
        if !self.encodings.contains(&encoding) {
            self.encodings.push(encoding);
        }
    }

    /// Writes `page`, returning its offset in the chunk and its size with its header.
    fn write(&mut self, page: CompressedPage) -> Result<(i64, i32)> {
        let spec = SerializedPageWriter::new(&mut self.sink).write_page(page)?;
        self.compressed_size += spec.compressed_size as i64;
        self.uncompressed_size += spec.uncompressed_size as i64;
        Ok((spec.offset as i64, spec.compressed_size as i32))
    }

    /// The chunk's bytes and what the row group records of it: metadata with `statistics`, the
    /// `column_index` given and the offset index, where the properties ask for one.
    pub(super) fn finish(
        self,
        descr: ColumnDescPtr,
        properties: &WriterProperties,
        statistics: Option<Statistics>,
        column_index: Option<ColumnIndexMetaData>,
    ) -> Result<(bytes::Bytes, ColumnCloseResult)> {
        let mut metadata = ColumnChunkMetaData::builder(descr)
            .set_compression(self.compression)
            .set_num_values(self.rows as i64)
            .set_total_compressed_size(self.compressed_size)
            .set_total_uncompressed_size(self.uncompressed_size)
            .set_dictionary_page_offset(self.dictionary_page_offset)
            .set_data_page_offset(
                self.data_page_offset
                    .unwrap_or(self.sink.bytes_written() as i64),
            )
            .set_encodings(self.encodings);
        if let Some(statistics) = statistics {
            metadata = metadata.set_statistics(statistics);
        }
        let close = ColumnCloseResult {
            bytes_written: self.compressed_size as u64,
            rows_written: self.rows as u64,
            metadata: metadata.build()?,
            bloom_filter: None,
            column_index,
            offset_index: (!properties.offset_index_disabled()).then(|| self.offsets.build()),
        };
        Ok((bytes::Bytes::from(self.sink.into_inner()?), close))
    }
}
