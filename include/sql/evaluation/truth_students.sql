-- True segment and weekly accuracy slope of every synthetic student.
SELECT user_id, segment, weekly_slope FROM synthetic_truth_student;
