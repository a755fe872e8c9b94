//! Writes store files: label columns straight from their Arrow dictionaries, `time` and `value`
//! straight from their buffers, anything else through arrow-rs's column writers.

mod dictionary;
mod fixed;
mod hybrid;
mod pages;

use std::io::Write;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, DictionaryArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Int32Type};
use datafusion::parquet::arrow::ArrowSchemaConverter;
use datafusion::parquet::arrow::add_encoded_arrow_schema_to_metadata;
use datafusion::parquet::arrow::arrow_writer::{ArrowRowGroupWriterFactory, compute_leaves};
use datafusion::parquet::errors::{ParquetError, Result};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::parquet::file::writer::SerializedFileWriter;

/// Writes `batch` as one Parquet file into `out`, in row groups of the properties' size.
///
/// arrow-rs's writer rebuilds a Parquet dictionary by hashing every row's string, although a
/// `Dictionary(Int32, Utf8)` column already is one: those columns are encoded here from their
/// keys, per run of one key. It also copies 64-bit values three times on their way into a page;
/// those without nulls are encoded here from their buffer. Columns that ask for anything these
/// writers do not do go through arrow-rs's own column writers.
pub fn write_batch(
    out: impl Write + Send,
    batch: &RecordBatch,
    properties: WriterProperties,
) -> Result<()> {
    if properties.max_row_group_bytes().is_some() {
        return Err(ParquetError::NYI(
            "row groups limited by bytes; the store limits them by rows".into(),
        ));
    }
    let schema = batch.schema();
    let mut properties = properties;
    add_encoded_arrow_schema_to_metadata(&schema, &mut properties);
    let parquet_schema = ArrowSchemaConverter::new()
        .with_coerce_types(properties.coerce_types())
        .convert(&schema)?;
    let properties = Arc::new(properties);
    let mut writer = SerializedFileWriter::new(
        out,
        parquet_schema.root_schema_ptr(),
        Arc::clone(&properties),
    )?;
    let factory = ArrowRowGroupWriterFactory::new(&writer, Arc::clone(&schema));
    let group_rows = properties
        .max_row_group_row_count()
        .unwrap_or(usize::MAX)
        .max(1);
    for (row_group, offset) in (0..batch.num_rows()).step_by(group_rows).enumerate() {
        let slice = batch.slice(offset, group_rows.min(batch.num_rows() - offset));
        let mut group = writer.next_row_group()?;
        let mut column_writers = factory.create_column_writers(row_group)?.into_iter();
        for (index, (field, column)) in schema.fields().iter().zip(slice.columns()).enumerate() {
            let mut column_writer = column_writers
                .next()
                .ok_or_else(|| ParquetError::General("fewer column writers than columns".into()))?;
            let descr = parquet_schema.column(index);
            let encoded = match dictionary_of_strings(column)
                .filter(|_| dictionary::encodes(&descr, &properties))
            {
                Some(dictionary) => Some(dictionary::encode_chunk(dictionary, descr, &properties)?),
                None => fixed::encode_chunk(column, &descr, &properties)?,
            };
            match encoded {
                Some((bytes, close)) => group.append_column(&bytes, close)?,
                None => {
                    for leaf in compute_leaves(field, column)? {
                        column_writer.write(&leaf)?;
                    }
                    column_writer.close()?.append_to_row_group(&mut group)?;
                }
            }
        }
        group.close()?;
    }
    writer.close()?;
    Ok(())
}

fn dictionary_of_strings(column: &ArrayRef) -> Option<&DictionaryArray<Int32Type>> {
    match column.data_type() {
        DataType::Dictionary(key, value)
            if key.as_ref() == &DataType::Int32 && value.as_ref() == &DataType::Utf8 =>
        {
            Some(column.as_dictionary::<Int32Type>())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::parquet::file::metadata::ColumnChunkMetaData;

    /// A column of runs, alternations, nulls (null keys and keys of null values) and unused
    /// dictionary values, over several row groups and pages, reads back as written, with
    /// min/max over the values in use and a page index.
    #[test]
    fn dictionary_columns_read_back() {
        use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
        use datafusion::arrow::compute::{cast, concat_batches};
        use datafusion::arrow::datatypes::{Field, Schema};
        use datafusion::parquet::arrow::arrow_reader::{
            ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
        };
        use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
        use datafusion::parquet::file::metadata::PageIndexPolicy;

        let rows = 50_000;
        let keys: Int32Array = (0..rows)
            .map(|i| match i % 1000 {
                0..=399 => Some(2 + (i / 1000) % 3),
                400..=409 => None,
                410..=699 => Some(6 + i % 2),
                700..=705 => Some(5),
                _ => Some(3 + (i / 7) % 2),
            })
            .collect();
        let values = StringArray::from(vec![
            Some("unused"),
            Some("zz-never"),
            Some("checkout-7d9f8b6c5d-x2x4z"),
            Some("b"),
            Some("a"),
            None,
            Some("eth0"),
            Some("eth1"),
        ]);
        let labels = DictionaryArray::<Int32Type>::try_new(keys, Arc::new(values)).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("label", labels.data_type().clone(), true),
            Field::new("n", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(labels.clone()),
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
            ],
        )
        .unwrap();
        // The last: no dictionary asked for, so arrow-rs's writer takes the column.
        for (compression, dictionary) in [
            (Compression::UNCOMPRESSED, true),
            (Compression::ZSTD(ZstdLevel::try_new(1).unwrap()), true),
            (Compression::ZSTD(ZstdLevel::try_new(1).unwrap()), false),
        ] {
            let properties = WriterProperties::builder()
                .set_compression(compression)
                .set_dictionary_enabled(dictionary)
                .set_max_row_group_row_count(Some(7_000))
                .set_data_page_row_count_limit(1_000)
                .build();
            let mut file = Vec::new();
            write_batch(&mut file, &batch, properties).unwrap();
            let file = bytes::Bytes::from(file);
            let options =
                ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
            let reader =
                ParquetRecordBatchReaderBuilder::try_new_with_options(file.clone(), options)
                    .unwrap();
            let metadata = reader.metadata().clone();
            assert_eq!(metadata.num_row_groups(), 8);
            let encodings = metadata
                .row_group(0)
                .column(0)
                .encodings()
                .collect::<Vec<_>>();
            assert_eq!(
                encodings.contains(&Encoding::RLE_DICTIONARY),
                dictionary,
                "{encodings:?}"
            );
            assert!(metadata.offset_index().is_some());
            let read: Vec<RecordBatch> = reader.build().unwrap().map(|b| b.unwrap()).collect();
            let read = concat_batches(&read[0].schema(), &read).unwrap();
            assert_eq!(read.column(0).data_type(), labels.data_type());
            assert_eq!(read.column(1).as_ref(), batch.column(1).as_ref());
            let as_text = |array: &ArrayRef| cast(array, &DataType::Utf8).unwrap();
            assert_eq!(
                as_text(read.column(0)).as_ref(),
                as_text(batch.column(0)).as_ref()
            );
            let first = metadata.row_group(0).column(0).statistics().unwrap();
            assert_eq!(first.min_bytes_opt(), Some("a".as_bytes()));
            assert_eq!(
                first.max_bytes_opt(),
                Some("eth1".as_bytes()),
                "over the values in use, not the whole dictionary"
            );
            assert_eq!(first.null_count_opt(), Some(7 * 10 + 7 * 6));
        }
    }

    /// `time` and `value` columns, with and without the store's encodings, compression and
    /// statistics, read back as arrow-rs's own writer writes them: same values, chunk statistics,
    /// page boundaries and page index. Columns with nulls or NaN, which arrow-rs's writer takes
    /// instead, read back too.
    #[test]
    fn fixed_columns_read_back_as_arrow_rs_writes_them() {
        use datafusion::arrow::array::{Float64Array, Int64Array, TimestampMillisecondArray};
        use datafusion::arrow::compute::concat_batches;
        use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::arrow::arrow_reader::{
            ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
        };
        use datafusion::parquet::basic::{Compression, Encoding, ZstdLevel};
        use datafusion::parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
        use datafusion::parquet::file::page_index::column_index::{
            ColumnIndexMetaData, PrimitiveColumnIndex,
        };
        use datafusion::parquet::file::properties::EnabledStatistics;
        use datafusion::parquet::schema::types::ColumnPath;

        let rows = 50_000i64;
        // Ascending runs that start again, as a store's pods do; a descending column; values
        // with both zeros, negatives and a page of one repeated value.
        let time: TimestampMillisecondArray = (0..rows)
            .map(|i| 1_772_323_200_000 + (i % 9_000) * 10_000 + i / 9_000)
            .collect::<Vec<_>>()
            .into();
        let time = time.with_timezone("UTC");
        let countdown = Int64Array::from_iter_values((0..rows).map(|i| rows - i * 3));
        // Pages of 4,096 rows: one value; 0.0 the least (written as -0.0); -0.0 the greatest
        // (written as 0.0).
        let value = Float64Array::from_iter_values((0..rows).map(|i| match (i / 4_096, i % 3) {
            (0, _) => 7.0,
            (1, 0) => 0.0,
            (1, _) => i as f64,
            (2, 0) => -0.0,
            (2, _) => -(i as f64),
            _ => ((i * 7_919) % 10_007 - 5_000) as f64 * 1.5,
        }));
        let with_nan = Float64Array::from_iter_values(
            (0..rows).map(|i| if i == 777 { f64::NAN } else { i as f64 }),
        );
        let with_null: Int64Array = (0..rows).map(|i| (i % 5 != 0).then_some(i)).collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new(
                "time",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                true,
            ),
            Field::new("countdown", DataType::Int64, false),
            Field::new("value", DataType::Float64, true),
            Field::new("with_nan", DataType::Float64, true),
            Field::new("with_null", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(time),
                Arc::new(countdown),
                Arc::new(value),
                Arc::new(with_nan),
                Arc::new(with_null),
            ],
        )
        .unwrap();

        let store_like = |compression, statistics| {
            WriterProperties::builder()
                .set_compression(compression)
                .set_dictionary_enabled(false)
                .set_statistics_enabled(statistics)
                .set_column_encoding(ColumnPath::from("value"), Encoding::BYTE_STREAM_SPLIT)
                .set_column_encoding(ColumnPath::from("with_nan"), Encoding::BYTE_STREAM_SPLIT)
                .set_max_row_group_row_count(Some(30_000))
                // A multiple of arrow-rs's 1,024-row batches, where it checks the page size.
                .set_data_page_row_count_limit(4_096)
                .build()
        };
        let zstd = Compression::ZSTD(ZstdLevel::try_new(1).unwrap());
        for properties in [
            store_like(zstd, EnabledStatistics::Page),
            store_like(Compression::UNCOMPRESSED, EnabledStatistics::Chunk),
            store_like(zstd, EnabledStatistics::None),
        ] {
            let mut ours = Vec::new();
            write_batch(&mut ours, &batch, properties.clone()).unwrap();
            let mut theirs = Vec::new();
            let mut writer =
                ArrowWriter::try_new(&mut theirs, schema.clone(), Some(properties)).unwrap();
            writer.write(&batch).unwrap();
            writer.close().unwrap();

            let read = |file: Vec<u8>| -> (RecordBatch, Arc<ParquetMetaData>) {
                let options =
                    ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional);
                let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(
                    bytes::Bytes::from(file),
                    options,
                )
                .unwrap();
                let metadata = reader.metadata().clone();
                let batches: Vec<RecordBatch> =
                    reader.build().unwrap().map(|b| b.unwrap()).collect();
                (concat_batches(&schema, &batches).unwrap(), metadata)
            };
            let (our_rows, ours) = read(ours);
            let (their_rows, theirs) = read(theirs);
            for column in 0..schema.fields().len() {
                // NaN is not equal to itself: compare the bits.
                let bits = |rows: &RecordBatch| {
                    let data = rows.column(column).to_data();
                    let values = data.buffer::<u64>(0).to_vec();
                    (0..data.len())
                        .map(|row| data.is_valid(row).then_some(values[row]))
                        .collect::<Vec<_>>()
                };
                assert_eq!(bits(&our_rows), bits(&batch), "column {column}");
                assert_eq!(bits(&their_rows), bits(&batch), "column {column}");
            }
            assert_eq!(ours.num_row_groups(), 2);
            for group in 0..ours.num_row_groups() {
                let (a, b) = (ours.row_group(group), theirs.row_group(group));
                for column in 0..schema.fields().len() {
                    let (x, y) = (a.column(column), b.column(column));
                    let name = x.column_path().string();
                    assert_eq!(x.num_values(), y.num_values(), "{name}");
                    assert_eq!(x.compression(), y.compression(), "{name}");
                    let encodings = |c: &ColumnChunkMetaData| {
                        c.encodings()
                            .filter(|e| *e != Encoding::RLE)
                            .collect::<Vec<_>>()
                    };
                    assert_eq!(encodings(x), encodings(y), "{name}");
                    let stats = |c: &ColumnChunkMetaData| {
                        c.statistics().map(|s| {
                            (
                                s.min_bytes_opt().map(<[u8]>::to_vec),
                                s.max_bytes_opt().map(<[u8]>::to_vec),
                                s.null_count_opt(),
                            )
                        })
                    };
                    assert_eq!(stats(x), stats(y), "{name}");
                    let offsets = |m: &ParquetMetaData| {
                        m.offset_index().map(|o| {
                            o[group][column]
                                .page_locations()
                                .iter()
                                .map(|p| p.first_row_index)
                                .collect::<Vec<_>>()
                        })
                    };
                    assert_eq!(offsets(&ours), offsets(&theirs), "{name}");
                    let index = |m: &ParquetMetaData| {
                        m.column_index().map(|i| {
                            let index = &i[group][column];
                            if let ColumnIndexMetaData::NONE = index {
                                return (None, Vec::new());
                            }
                            // Debug tells -0.0 from 0.0.
                            fn cells<T: std::fmt::Debug>(
                                i: &PrimitiveColumnIndex<T>,
                            ) -> Vec<String> {
                                (0..i.num_pages() as usize)
                                    .map(|p| {
                                        format!(
                                            "{:?}",
                                            (i.min_value(p), i.max_value(p), i.null_count(p))
                                        )
                                    })
                                    .collect()
                            }
                            let cells = match index {
                                ColumnIndexMetaData::INT64(i) => cells(i),
                                ColumnIndexMetaData::DOUBLE(i) => cells(i),
                                other => panic!("{name}: {other:?}"),
                            };
                            (index.get_boundary_order(), cells)
                        })
                    };
                    assert_eq!(index(&ours), index(&theirs), "{name}");
                }
            }
        }
    }
}
