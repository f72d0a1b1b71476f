-- Whether a student exists, and their goal and exam date.
SELECT user_id, accuracy_goal, exam_date
FROM students
WHERE user_id = %(user_id)s;
